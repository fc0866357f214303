// A flipped byte at any position of a cached model or a saved checkpoint is caught before the data
// leaves the storage layer (so before it reaches the GPU), with a typed error. The sweep writes a
// model through the cache's own writer (shards laid out by the real shardLayout of a small NF4
// plan) and a checkpoint through CheckpointStore.save, then, for every byte of every stored record,
// flips one bit and reads back as the loader does: ModelCache.get, then readShard for every shard;
// CheckpointStore.load. Each flip must end in a ModelFileError naming the damaged record, never in
// data that differs from what was written, and never in "nothing cached" (which would hide it).
//
// IndexedDB stores objects (the manifests) by structured clone, not as bytes we can address; the
// sweep takes their JSON text as their bytes. A flip that leaves text JSON cannot parse is a record
// IndexedDB could not give back as an object: the store then hands back the raw bytes, which must be
// refused like any other damage.
//
// npm test flips bit 0 of every byte of the manifests and the checkpoint, and of a dense sample of
// each shard's bytes (seconds); `npm run sweep:corruption` (SWEEP_FULL=1) flips each of the 8 bits
// of every byte of everything (about 0.5 million flips; minutes).
import { describe, expect, test } from 'vitest';
import { ModelFileError } from '../errors.ts';
import { ModelCache, memoryStore, type ModelManifest } from '../io/cache.ts';
import { shardLayout } from '../model/load-cached.ts';
import { Plan, type ModelDims } from '../model/plan.ts';
import { CheckpointStore, type CheckpointState } from '../train/checkpoint.ts';

const FULL = process.env.SWEEP_FULL === '1';
const BITS = FULL ? [0, 1, 2, 3, 4, 5, 6, 7] : [0];
const KEY = 'hub:org/model@main:nf4#f16+dq';

type Store = ReturnType<typeof memoryStore>;
type Region = { name: string; from: number; to: number };

interface Record_ {
  key: string;
  /** The record as bytes: shard and blob bytes as they are, objects as their JSON text. */
  bytes: Uint8Array;
  isObject: boolean;
  regions: Region[];
}

const enc = new TextEncoder();

/** Deterministic filler for shard bytes (not zeros: a flip of a zero byte is not special). */
function filler(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed * 2654435761 >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    out[i] = x & 255;
  }
  return out;
}

/** Named byte ranges of an object record's JSON text: each top-level field, and each shard entry. */
function jsonRegions(text: string, obj: Record<string, unknown>, prefix: string): Region[] {
  const regions: Region[] = [];
  const keys = Object.keys(obj);
  for (let i = 0; i < keys.length; i++) {
    const at = text.indexOf(`"${keys[i]}":`, i === 0 ? 0 : regions[i - 1].from);
    regions.push({ name: `${prefix}.${keys[i]}`, from: at, to: text.length });
    if (i > 0) regions[i - 1].to = at;
  }
  // Byte offsets: the text is ASCII except inside strings; recompute through the encoder.
  const byteAt = (charAt: number) => enc.encode(text.slice(0, charAt)).length;
  return regions.map((r) => ({ ...r, from: byteAt(r.from), to: byteAt(r.to) }));
}

function snapshot(store: Store): Record_[] {
  const out: Record_[] = [];
  for (const [key, v] of store.data) {
    if (v instanceof Uint8Array) out.push({ key, bytes: v.slice(), isObject: false, regions: [] });
    else {
      const text = JSON.stringify(v);
      out.push({ key, bytes: enc.encode(text), isObject: true, regions: jsonRegions(text, v as Record<string, unknown>, key) });
    }
  }
  return out;
}

/** A store over `data` that hands values out as they are: the readers never change what they
 *  get, and copying every shard for each of thousands of flips would dominate the sweep. */
function viewStore(data: Map<string, unknown>): Store {
  return {
    data,
    get: async <T>(k: string) => data.get(k) as T | undefined,
    set: async (k, v) => void data.set(k, v),
    del: async (k) => void data.delete(k),
    keys: async () => [...data.keys()],
  };
}

const parsed = new WeakMap<Record_, unknown>();

/** The store with record `r` replaced by its bytes with bit `bit` of byte `at` flipped. */
function damaged(pristine: Record_[], r: Record_, at: number, bit: number): Store {
  const store = viewStore(new Map());
  for (const x of pristine) {
    if (x === r) continue;
    if (x.isObject && !parsed.has(x)) parsed.set(x, JSON.parse(new TextDecoder().decode(x.bytes)));
    // Objects are cloned (a reader may keep and compare them); bytes are shared.
    store.data.set(x.key, x.isObject ? structuredClone(parsed.get(x)) : x.bytes);
  }
  const b = r.bytes.slice();
  b[at] ^= 1 << bit;
  let value: unknown = b;
  if (r.isObject) {
    try {
      value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(b));
    } catch {
      value = b; // not an object any more: what a damaged record reads back as
    }
  }
  store.data.set(r.key, value);
  return store;
}

interface Tally {
  positions: number;
  flips: number;
  caught: number;
  byRegion: Map<string, { flips: number; caught: number }>;
  missed: string[];
}

function tally(): Tally {
  return { positions: 0, flips: 0, caught: 0, byRegion: new Map(), missed: [] };
}

function regionOf(r: Record_, at: number): string {
  const short = (k: string) => k.replace(`model/${KEY}/`, '').replace(/^checkpoint\/current\//, '');
  if (!r.isObject) return short(r.key);
  const g = r.regions.find((x) => at >= x.from && at < x.to);
  return short(g?.name ?? `${r.key} (braces)`).replace(/\.shards$/, '.shards[]');
}

/** Byte positions swept in a record: all of them in the full sweep and in every manifest; in npm
 *  test's shards, the first and last 64 bytes and every 11th between (each piece boundary and the
 *  hashed length are covered by the edges; the stride samples the interior, which SHA-256 covers
 *  byte for byte anyway). */
function positions(r: Record_): number[] {
  const n = r.bytes.length;
  if (FULL || !r.key.includes('/shard/')) return Array.from({ length: n }, (_, i) => i);
  const out: number[] = [];
  for (let i = 0; i < n; i++) if (i < 64 || i >= n - 64 || i % 11 === 0) out.push(i);
  return out;
}

/** Sweeps every byte of every record; `read` must throw a ModelFileError or return data equal to the original. */
async function sweep(pristine: Record_[], read: (store: Store) => Promise<unknown>, expected: unknown, regionName = regionOf): Promise<Tally> {
  const t = tally();
  for (const r of pristine) {
    for (const at of positions(r)) {
      t.positions++;
      const region = regionName(r, at);
      const row = t.byRegion.get(region) ?? { flips: 0, caught: 0 };
      t.byRegion.set(region, row);
      for (const bit of BITS) {
        t.flips++;
        row.flips++;
        let outcome: string;
        try {
          const got = await read(damaged(pristine, r, at, bit));
          outcome = got === null ? 'treated as not stored' : isEqual(got, expected) ? 'read back unchanged' : 'read back changed';
        } catch (e) {
          if (e instanceof ModelFileError && typeof e.details.file === 'string' && e.hint.length > 0) {
            t.caught++;
            row.caught++;
            continue;
          }
          outcome = `untyped error ${String(e)}`;
        }
        if (t.missed.length < 20) t.missed.push(`${r.key} byte ${at} bit ${bit} (${region}): ${outcome}`);
      }
    }
  }
  return t;
}

function isEqual(a: unknown, b: unknown): boolean {
  try {
    expect(a).toEqual(b);
    return true;
  } catch {
    return false;
  }
}

function report(what: string, t: Tally, pristine: Record_[]): void {
  const rows = [...t.byRegion].map(([k, v]) => `  ${k}: ${v.caught}/${v.flips}`).join('\n');
  const bytes = pristine.reduce((n, r) => n + r.bytes.length, 0);
  console.log(`${what}: ${bytes} bytes stored, ${t.positions} positions swept, ${t.flips} flips (bits ${BITS.join(',')}), ${t.caught} caught (${((100 * t.caught) / t.flips).toFixed(2)} %)\n${rows}`);
}

// A small NF4 model whose cache shards come from the real layout: globals (embedding, norm) and one
// shard per layer holding packed weights, absmax and norms; in the site's memory-saving form (f16
// tables, double-quantized absmax), so the manifest's form fields are swept too.
const dims: ModelDims = { vocabSize: 64, hiddenSize: 64, intermediateSize: 128, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 16, rmsNormEps: 1e-5, tieWordEmbeddings: true, attentionBias: false };

async function cachedModel(): Promise<{ store: Store; manifest: ModelManifest; shards: Map<string, Uint8Array> }> {
  const plan = new Plan(dims, { batch: 1, seqLen: 1, quant: 'nf4', doubleQuant: true, storage: 'f16', training: false, checkpointing: false, maxPositions: 16, limits: { maxStorageBufferBindingSize: 1 << 27, maxBufferSize: 1 << 28 } });
  const store = memoryStore();
  const w = await new ModelCache(store).begin({
    key: KEY, name: 'org/model', source: 'hub', revision: 'main', quant: 'nf4', storage: 'f16', doubleQuant: true,
    config: { model_type: 'llama', vocab_size: dims.vocabSize, hidden_size: dims.hiddenSize, rope_theta: 10000.0 },
    files: { 'tokenizer.json': '{"model":{"type":"BPE","vocab":{"a":0,"ab":1}}}', 'tokenizer_config.json': '{"bos_token":"<s>"}' },
  });
  const shards = new Map<string, Uint8Array>();
  for (const [i, s] of shardLayout(plan).entries()) {
    const data = filler(s.pieces.reduce((n, p) => n + p.bytes, 0), i + 1);
    shards.set(s.id, data);
    await w.addShard(s.id, s.pieces, data);
  }
  return { store, manifest: await w.commit(), shards };
}

/** What the loader takes from the cache: the manifest, then every shard's checked bytes. */
async function readModel(store: Store): Promise<unknown> {
  const cache = new ModelCache(store);
  const m = await cache.get(KEY);
  if (!m) return null;
  const out: Record<string, Uint8Array> = {};
  for (const s of m.shards) out[s.id] = await cache.readShard(m, s);
  return { manifest: m, shards: out };
}

function checkpointState(): CheckpointState<{ step: number; savedAt: number; modelKey: string; datasetFile: string }> {
  const f32 = (n: number, seed: number) => new Float32Array(filler(4 * n, seed).buffer).map((x) => (Number.isFinite(x) ? x : 0));
  const seq = (n: number, seed: number) => {
    const ids = Int32Array.from(filler(n, seed), (b) => b % 64);
    return { input_ids: ids, labels: ids.map((x, i) => (i < 2 ? -100 : x)), position_ids: ids.map((_, i) => i), seq_lengths: [n] };
  };
  const n = 96;
  return {
    info: { step: 3, savedAt: 1_700_000_000_000, modelKey: 'demo:nf4', datasetFile: 'baking.jsonl' },
    position: { step: 3, epoch: 0, micro: 3 }, loraStep: 3,
    logs: [{ step: 1, epoch: 0, loss: 10.25, lr: 0.01, grad_norm: 1.5, tokens: 64, tokens_per_s: 12 }],
    params: f32(n, 11), m: f32(n, 12), v: f32(n, 13).map(Math.abs),
    train: [seq(24, 14), seq(17, 15)], validation: [seq(9, 16)],
  };
}

/** Checkpoint blob regions: the safetensors length prefix, its JSON header, each tensor's data. */
function blobRegions(bytes: Uint8Array): Region[] {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as Record<string, { data_offsets?: [number, number] }>;
  const regions: Region[] = [{ name: 'blob.length', from: 0, to: 8 }, { name: 'blob.header', from: 8, to: 8 + n }];
  for (const [name, t] of Object.entries(header)) {
    if (t.data_offsets) regions.push({ name: `blob.${name}`, from: 8 + n + t.data_offsets[0], to: 8 + n + t.data_offsets[1] });
  }
  return regions;
}

describe('every flipped byte is caught before it leaves storage', () => {
  test('a cached model: manifest (config, tokenizer texts, shard list) and every shard', { timeout: FULL ? 3_600_000 : 60_000 }, async () => {
    const { store, manifest, shards } = await cachedModel();
    const pristine = snapshot(store);
    const expected = { manifest, shards: Object.fromEntries(shards) };
    expect(await readModel(damaged(pristine, pristine[0], 0, 0)).catch(() => 'refused')).toBe('refused');
    expect(isEqual(await readModel(store), expected)).toBe(true);
    const t = await sweep(pristine, readModel, expected);
    report('cached model', t, pristine);
    expect(t.missed).toEqual([]);
    expect(t.caught).toBe(t.flips);
    // Every region was swept: the manifest's fields and each shard of the layout.
    for (const r of ['manifest.config', 'manifest.files', 'manifest.storage', 'manifest.doubleQuant', 'manifest.shards[]', 'manifest.seal', 'manifest.complete', 'shard/globals.0', 'shard/layer.0', 'shard/layer.1']) {
      expect(t.byRegion.get(r)?.flips, r).toBeGreaterThan(0);
    }
  });

  test('a checkpoint: manifest (blob name, size, checksum, info) and every byte of the blob', { timeout: FULL ? 3_600_000 : 60_000 }, async () => {
    const store = memoryStore();
    const cks = new CheckpointStore<ReturnType<typeof checkpointState>['info']>(store);
    const state = checkpointState();
    await cks.save(state);
    const expected = await cks.load();
    expect(expected?.info).toEqual(state.info);
    const pristine = snapshot(store);
    const blob = pristine.find((r) => r.key.includes('/blob/'))!;
    blob.regions = blobRegions(blob.bytes);
    const name = (r: Record_, at: number) => (r === blob ? blob.regions.find((g) => at >= g.from && at < g.to)?.name ?? 'blob' : regionOf(r, at));
    const t = await sweep(pristine, async (s) => {
      const c = new CheckpointStore(s);
      // The step shown before resuming is the one saved or none: never a damaged one.
      const info = await c.info();
      if (info !== null && !isEqual(info, state.info)) return { info };
      return c.load();
    }, expected, name);
    report('checkpoint', t, pristine);
    expect(t.missed).toEqual([]);
    expect(t.caught).toBe(t.flips);
    for (const r of ['manifest.blob', 'manifest.sha256', 'manifest.info', 'manifest.seal', 'blob.length', 'blob.header', 'blob.lora.params', 'blob.lora.adam_v', 'blob.train.input_ids']) {
      expect(t.byRegion.get(r)?.flips, r).toBeGreaterThan(0);
    }
  });
});
