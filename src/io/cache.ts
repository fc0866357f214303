// The IndexedDB model cache: a model's quantized weights as per-layer shards, plus one manifest
// (model id, revision, config, tokenizer file texts, a SHA-256 per shard, total bytes). The manifest
// is written first with complete=false and rewritten with complete=true only after the last shard,
// so a half-written model (tab closed, quota hit) never counts as cached; IndexedDB has no rename, so
// this flag is our analogue of the tmp-dir-then-rename commit (transformers PR #27820).
//
// The manifest carries a seal: the SHA-256 of its own canonical JSON. The shards' checksums protect
// the weights, but the manifest holds the config and the tokenizer texts too, and a changed byte
// there (a vocabulary entry, rope_theta) would load a subtly different model with no error. A
// manifest whose seal does not match is refused with a typed error (src/app/corruption.test.ts
// flips every byte of a cached model and of a checkpoint to show each one is caught).
//
// Storage sits behind a four-verb KeyValueStore so the logic runs in Node tests against memory and in
// the browser against idb-keyval. io stays a leaf: shards are opaque bytes with named pieces; what
// the pieces mean is src/model/load-cached.ts's business.
import { createStore, del, get, keys, set } from 'idb-keyval';
import { ModelFileError, StorageQuotaError } from '../errors.ts';

export interface KeyValueStore {
  get<T>(key: string): Promise<T | undefined>;
  set(key: string, value: unknown): Promise<void>;
  del(key: string): Promise<void>;
  keys(): Promise<string[]>;
}

/** IndexedDB through idb-keyval (one database, one object store, shared by models and checkpoints). */
export function idbStore(dbName = 'webtune', storeName = 'kv'): KeyValueStore {
  const store = createStore(dbName, storeName);
  return {
    get: (k) => get(k, store),
    set: (k, v) => set(k, v, store),
    del: (k) => del(k, store),
    keys: async () => (await keys(store)).map(String),
  };
}

/** A store in memory (tests, and a fallback where IndexedDB is unavailable). Values are copied in
 *  and out (structured clone) as IndexedDB does, so a caller that changes an object after storing
 *  it does not change what is stored. */
export function memoryStore(): KeyValueStore & { data: Map<string, unknown> } {
  const data = new Map<string, unknown>();
  return {
    data,
    get: async <T>(k: string) => (data.has(k) ? structuredClone(data.get(k)) : undefined) as T | undefined,
    set: async (k, v) => void data.set(k, structuredClone(v)),
    del: async (k) => void data.delete(k),
    keys: async () => [...data.keys()],
  };
}

/** The browser refused to store more (QuotaExceededError). Nothing partial is left behind. */
export function isQuotaError(e: unknown): boolean {
  const name = (e as { name?: unknown } | null)?.name;
  // Firefox used NS_ERROR_DOM_QUOTA_REACHED before it standardised on QuotaExceededError.
  return name === 'QuotaExceededError' || name === 'NS_ERROR_DOM_QUOTA_REACHED';
}

/** SHA-256 as lowercase hex (crypto.subtle exists in pages, workers and Node >= 20). */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>);
  let s = '';
  for (const b of new Uint8Array(digest)) s += b.toString(16).padStart(2, '0');
  return s;
}

/** A named byte range inside a shard: `bytes` bytes of tensor `name`, starting at `offset` in that
 *  tensor (big tensors are split over several shards). */
export interface ShardPiece {
  name: string;
  offset: number;
  bytes: number;
}

export interface ShardEntry {
  id: string;
  bytes: number;
  sha256: string;
  pieces: ShardPiece[];
}

/** How the weights are held on the GPU, and so in the cache's shards: the embedding and an untied
 *  head as f32 or f16 pairs, the NF4 absmax as f32 or as double-quantized 8-bit codes. */
export interface WeightForm {
  storage: 'f16' | 'f32';
  doubleQuant: boolean;
}

/** The form of an entry written before forms were recorded: f32 tables, f32 absmax. */
export const F32_FORM: Readonly<WeightForm> = { storage: 'f32', doubleQuant: false };

export interface ModelManifest {
  version: 2;
  key: string;
  name: string;
  source: 'demo' | 'hub' | 'files';
  revision: string | null;
  quant: 'nf4' | 'none';
  /** The weights' form (WeightForm). Absent in entries written before the cache held more than one
   *  form: those hold F32_FORM. */
  storage?: 'f16' | 'f32';
  doubleQuant?: boolean;
  /** config.json as parsed. */
  config: Record<string, unknown>;
  /** Texts of tokenizer.json, tokenizer_config.json (and generation_config.json when present). */
  files: Record<string, string>;
  shards: ShardEntry[];
  totalBytes: number;
  savedAt: number;
  /** Written true last: only then is the entry a cached model. */
  complete: boolean;
  /** SHA-256 of the canonical JSON of every other field (sealOf). */
  seal: string;
}

/** JSON with object keys sorted at every level: the same value always gives the same text, however
 *  a store or a JSON round trip ordered its keys. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map((x) => (x === undefined ? 'null' : canonicalJson(x))).join(',')}]`;
  if (typeof v === 'object' && v !== null) {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o).sort().filter((k) => o[k] !== undefined).map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

/** The seal of a stored record: SHA-256 of its canonical JSON without the `seal` field. */
export async function sealOf(v: Record<string, unknown>): Promise<string> {
  const { seal: _, ...rest } = v;
  return sha256Hex(new TextEncoder().encode(canonicalJson(rest)));
}

/** Whether a value read back from a store is a plain object whose seal matches its content. */
export async function isSealed(v: unknown): Promise<boolean> {
  if (!plainObject(v) || typeof v.seal !== 'string') return false;
  try {
    return (await sealOf(v)) === v.seal;
  } catch {
    return false; // a value JSON cannot describe (a BigInt, a cycle): not something we wrote
  }
}

const plainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v) && !ArrayBuffer.isView(v) && !(v instanceof ArrayBuffer);
const count = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

/** The weight form a manifest records (F32_FORM for an entry written before forms were recorded). */
export function manifestForm(m: Pick<ModelManifest, 'storage' | 'doubleQuant'>): WeightForm {
  return { storage: m.storage ?? F32_FORM.storage, doubleQuant: m.doubleQuant ?? F32_FORM.doubleQuant };
}

/** "NF4 · f16 tables · double quant": what the cached-models list, the training form and the errors
 *  call a form (the site's main thread imports it from here, away from the engine's modules). */
export function formLabel(quant: 'nf4' | 'none', form: WeightForm): string {
  return [quant === 'nf4' ? 'NF4' : 'full precision', `${form.storage} tables`, ...(form.doubleQuant ? ['double quant'] : [])].join(' · ');
}

/** The first field of a value read back from the store that is not what this version writes for a
 *  complete manifest of `key` ("shards[0].pieces[1].bytes"), or undefined when it is one. IndexedDB
 *  returns whatever an older version, another tab or a damaged profile left there, and the loader
 *  indexes into every field (src/fuzz/cache.fuzz.test.ts). */
export function manifestProblem(v: unknown, key: string): string | undefined {
  if (!plainObject(v)) return 'manifest';
  if (v.complete !== true) return 'complete';
  if (v.version !== 2) return 'version';
  if (v.key !== key) return 'key';
  if (typeof v.seal !== 'string') return 'seal';
  if (typeof v.name !== 'string') return 'name';
  if (!['demo', 'hub', 'files'].includes(v.source as string)) return 'source';
  if (!['nf4', 'none'].includes(v.quant as string)) return 'quant';
  // The form fields are optional (older entries), but when present they must be a form.
  if (v.storage !== undefined && v.storage !== 'f16' && v.storage !== 'f32') return 'storage';
  if (v.doubleQuant !== undefined && typeof v.doubleQuant !== 'boolean') return 'doubleQuant';
  if (v.doubleQuant === true && v.quant !== 'nf4') return 'doubleQuant';
  if (v.revision !== null && typeof v.revision !== 'string') return 'revision';
  if (!plainObject(v.config)) return 'config';
  if (!plainObject(v.files) || !Object.values(v.files).every((t) => typeof t === 'string')) return 'files';
  if (typeof v.savedAt !== 'number' || !Number.isFinite(v.savedAt)) return 'savedAt';
  if (!Array.isArray(v.shards)) return 'shards';
  let total = 0;
  for (const [i, s] of (v.shards as unknown[]).entries()) {
    const at = `shards[${i}]`;
    if (!plainObject(s)) return at;
    if (typeof s.id !== 'string') return `${at}.id`;
    if (!count(s.bytes)) return `${at}.bytes`;
    if (typeof s.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(s.sha256)) return `${at}.sha256`;
    if (!Array.isArray(s.pieces)) return `${at}.pieces`;
    let sum = 0;
    for (const [j, p] of (s.pieces as unknown[]).entries()) {
      if (!plainObject(p) || typeof p.name !== 'string' || !count(p.offset) || !count(p.bytes)) return `${at}.pieces[${j}]`;
      sum += p.bytes;
    }
    if (sum !== s.bytes) return `${at}.bytes`;
    total += s.bytes;
  }
  return v.totalBytes === total ? undefined : 'totalBytes';
}

/** Whether a value read back from the store is a complete manifest of `key` in the shape this
 *  version writes (manifestProblem finds nothing wrong). */
export function isManifest(v: unknown, key: string): v is ModelManifest {
  return manifestProblem(v, key) === undefined;
}

const PREFIX = 'model/';
const manifestKey = (key: string) => `${PREFIX}${key}/manifest`;
const shardKey = (key: string, id: string) => `${PREFIX}${key}/shard/${id}`;

export interface CacheWriter {
  /** Stores one shard (pieces laid out back to back in `data`) and records its checksum. */
  addShard(id: string, pieces: ShardPiece[], data: Uint8Array): Promise<void>;
  /** Marks the model complete (the last write). */
  commit(): Promise<ModelManifest>;
  /** Removes everything written so far. */
  abort(): Promise<void>;
}

/** The Web Locks API (navigator.locks), as far as the cache uses it. */
export interface Locks {
  request<T>(name: string, options: { ifAvailable?: boolean }, callback: (lock: unknown) => Promise<T> | T): Promise<T>;
}

export class ModelCache {
  /** With `locks` (a browser: navigator.locks, shared by every tab and worker of the origin), a
   *  writer holds a lock on its entry for as long as it writes, so garbage collection can tell an
   *  entry another tab is writing from one whose writer died (a closed tab, a killed browser). */
  constructor(readonly store: KeyValueStore, readonly locks?: Locks) {}

  private static lockName(key: string): string {
    return `webtune-cache:${key}`;
  }

  /** Runs `write` (begin … commit or abort) holding the entry's lock, where there are locks. */
  async writing<T>(key: string, write: () => Promise<T>): Promise<T> {
    return this.locks ? this.locks.request(ModelCache.lockName(key), {}, write) : write();
  }

  /** Complete cached models, newest first. Malformed manifests are left out (collectGarbage or
   *  get() removes them). */
  async list(): Promise<ModelManifest[]> {
    const out: ModelManifest[] = [];
    for (const k of await this.store.keys()) {
      if (!k.startsWith(PREFIX) || !k.endsWith('/manifest')) continue;
      const m = await this.store.get<unknown>(k);
      if (isManifest(m, k.slice(PREFIX.length, -'/manifest'.length)) && (await isSealed(m))) out.push(m);
    }
    return out.sort((a, b) => b.savedAt - a.savedAt);
  }

  /** The manifest of a complete entry, or null when there is none: missing, still being written (or
   *  left by a writer that never finished), or written by the version before seals. A damaged
   *  manifest (its seal does not match, or it is malformed) drops the entry and throws, naming it. */
  async get(key: string): Promise<ModelManifest | null> {
    const m = await this.store.get<unknown>(manifestKey(key));
    if (m === undefined) return null;
    if (plainObject(m) && m.version === 1 && !('seal' in m)) {
      // Not damaged, only unverifiable: the model is loaded from its source and cached afresh.
      await this.delete(key).catch(() => {});
      return null;
    }
    let why = 'does not match its checksum', field: string | undefined;
    if (await isSealed(m)) {
      if ((m as { complete?: unknown }).complete !== true) return null;
      field = manifestProblem(m, key);
      if (field === undefined) return m as ModelManifest;
      why = `is malformed: its field "${field}" is not what this version writes`;
    }
    // Best effort: a failed delete leaves an entry that still never loads.
    await this.delete(key).catch(() => {});
    throw new ModelFileError(
      `The cached copy of "${key}" is corrupt: its manifest ${why}. The cache entry was deleted.`,
      'Load the model again from its source; it will be downloaded (or read) and quantized afresh.',
      { file: manifestKey(key), key, ...(field ? { field } : {}), reason: 'cache-corrupt' },
    );
  }

  /** Deletes an entry: the manifest first, so a crash mid-delete leaves orphans, never a model
   *  that claims shards it no longer has. */
  async delete(key: string): Promise<void> {
    await this.store.del(manifestKey(key));
    const pre = `${PREFIX}${key}/`;
    for (const k of await this.store.keys()) if (k.startsWith(pre)) await this.store.del(k);
  }

  /** Removes entries that were never completed (a tab closed while caching), damaged ones, and
   *  shards without a manifest. With locks, an entry whose writer still holds its lock is left
   *  alone; without, call this only when no one can be writing. */
  async collectGarbage(): Promise<string[]> {
    const all = await this.store.keys();
    const byKey = new Map<string, string[]>();
    for (const k of all) {
      if (!k.startsWith(PREFIX)) continue;
      const model = k.slice(PREFIX.length, k.lastIndexOf(k.endsWith('/manifest') ? '/manifest' : '/shard/'));
      if (!byKey.has(model)) byKey.set(model, []);
      byKey.get(model)!.push(k);
    }
    const dropped: string[] = [];
    for (const [model] of byKey) {
      const m = await this.store.get<unknown>(manifestKey(model));
      if (isManifest(m, model) && (await isSealed(m))) continue;
      const drop = async () => {
        await this.delete(model);
        dropped.push(model);
      };
      if (!this.locks) await drop();
      else await this.locks.request(ModelCache.lockName(model), { ifAvailable: true }, async (lock) => (lock ? drop() : undefined));
    }
    return dropped;
  }

  /** Starts writing `base` (shards and totals are filled in as they come). Any earlier entry under
   *  the same key is replaced. */
  async begin(base: Omit<ModelManifest, 'version' | 'shards' | 'totalBytes' | 'savedAt' | 'complete' | 'seal'>): Promise<CacheWriter> {
    const manifest: ModelManifest = { ...base, version: 2, shards: [], totalBytes: 0, savedAt: Date.now(), complete: false, seal: '' };
    const written: string[] = [];
    const store = this.store;
    await this.delete(base.key);
    const abort = async () => {
      // Best effort: deleting can itself fail on a broken database; the entry stays incomplete then,
      // so it still never counts as cached.
      try {
        await this.delete(base.key);
      } catch {
        for (const k of written) await store.del(k).catch(() => {});
      }
    };
    const put = async (k: string, v: unknown, what: string, bytes: number) => {
      try {
        await store.set(k, v);
        written.push(k);
      } catch (e) {
        await abort();
        if (isQuotaError(e)) throw new StorageQuotaError(`the quantized model "${base.name}"`, { key: base.key, shard: what, bytes: manifest.totalBytes + bytes });
        throw e;
      }
    };
    manifest.seal = await sealOf(manifest as unknown as Record<string, unknown>);
    await put(manifestKey(base.key), manifest, 'manifest', 0);
    return {
      async addShard(id, pieces, data) {
        const sum = pieces.reduce((s, p) => s + p.bytes, 0);
        if (sum !== data.length) throw new Error(`cache: shard ${id} has ${data.length} bytes but its pieces add up to ${sum}`);
        // A standalone buffer: structured clone of a view would store its whole underlying buffer.
        const own = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength ? data : data.slice();
        const entry: ShardEntry = { id, bytes: own.length, sha256: await sha256Hex(own), pieces };
        await put(shardKey(base.key, id), own, id, own.length);
        manifest.shards.push(entry);
        manifest.totalBytes += own.length;
      },
      async commit() {
        manifest.complete = true;
        manifest.savedAt = Date.now();
        manifest.seal = await sealOf(manifest as unknown as Record<string, unknown>);
        await put(manifestKey(base.key), manifest, 'manifest', 0);
        return manifest;
      },
      abort,
    };
  }

  /** One shard's bytes, checked against the manifest's SHA-256. A mismatch or a missing shard
   *  drops the whole entry (the next load downloads it again) and throws naming the shard. */
  async readShard(m: ModelManifest, s: ShardEntry): Promise<Uint8Array> {
    const raw = await this.store.get<unknown>(shardKey(m.key, s.id));
    // Anything else the store holds there (a string of the right length, say) is not our shard.
    const bytes = raw instanceof ArrayBuffer ? new Uint8Array(raw) : raw instanceof Uint8Array ? raw : undefined;
    let why: string | null = null;
    if (!bytes) why = raw === undefined ? 'is missing' : 'is not bytes';
    else if (bytes.length !== s.bytes) why = `has ${bytes.length} bytes, the manifest says ${s.bytes}`;
    else if ((await sha256Hex(bytes)) !== s.sha256) why = 'does not match its SHA-256 checksum';
    if (why) {
      await this.delete(m.key);
      throw new ModelFileError(
        `The cached copy of "${m.name}" is corrupt: shard ${s.id} ${why}. The cache entry was deleted.`,
        'Load the model again from its source; it will be downloaded (or read) and quantized afresh.',
        { file: shardKey(m.key, s.id), shard: s.id, key: m.key, reason: 'cache-corrupt' },
      );
    }
    return bytes!;
  }
}
