// The quantized weights as cache shards, both ways. After a model is loaded (and its linear layers
// quantized on the GPU), weightShards() reads the weight buffers back one layer at a time into
// shards; loadCachedWeights() later uploads those bytes straight into the planned buffers, with no
// safetensors parsing and no quantization. The RoPE tables are not cached: they depend on the run's
// maxPositions and cost nothing to rebuild.
//
// A shard holds the pieces of named plan buffers back to back (ShardPiece: name, byte offset in the
// buffer, length). One shard per decoder layer; the embedding, final norm and lm_head go in
// "globals" shards, split at MAX_SHARD_BYTES so neither a readback nor an IndexedDB value is ever a
// whole 1 GB embedding.
import type { Gpu, Tensor } from '../gpu/runtime.ts';
import { ModelFileError } from '../errors.ts';
import type { ShardPiece } from '../io/cache.ts';
import type { ModelConfig } from './config.ts';
import { defaultRope, needsLongTables, ropeTablesFor } from './rope.ts';
import { layerNormField, layerNormNames } from './load.ts';
import { embeddingChunks, embeddingViews } from '../kernels/embedding.ts';
import { PROJS, type Proj } from './lora.ts';
import { linearShape } from '../io/hf-names.ts';
import type { BaseLinear, LayerWeights, ModelWeights } from './llama.ts';
import type { Plan, PlanRow } from './plan.ts';

export const MAX_SHARD_BYTES = 64 * 1024 * 1024;

export interface ShardLayout {
  id: string;
  pieces: ShardPiece[];
}

/** Weight buffers that are cached: every planned weight except the RoPE tables. */
function cachedRows(plan: Plan): PlanRow[] {
  return plan.rows.filter((r) => r.phase === 'weights' && !r.name.startsWith('rope.'));
}

/** Which bytes go in which shard, from the plan alone (the writer and tests share it). */
export function shardLayout(plan: Plan): ShardLayout[] {
  const layers = new Map<number, ShardPiece[]>();
  const globals: ShardLayout[] = [];
  let cur: ShardLayout | undefined;
  let curBytes = 0;
  for (const r of cachedRows(plan)) {
    const m = /^layers\.(\d+)\./.exec(r.name);
    if (m) {
      const l = Number(m[1]);
      if (!layers.has(l)) layers.set(l, []);
      layers.get(l)!.push({ name: r.name, offset: 0, bytes: r.bytes });
      continue;
    }
    for (let off = 0; off < r.bytes; ) {
      if (!cur || curBytes >= MAX_SHARD_BYTES) {
        cur = { id: `globals.${globals.length}`, pieces: [] };
        curBytes = 0;
        globals.push(cur);
      }
      const n = Math.min(r.bytes - off, MAX_SHARD_BYTES - curBytes);
      cur.pieces.push({ name: r.name, offset: off, bytes: n });
      curBytes += n;
      off += n;
    }
  }
  const out = [...globals];
  for (const [l, pieces] of [...layers].sort((a, b) => a[0] - b[0])) out.push({ id: `layer.${l}`, pieces });
  return out;
}

/** Reads the loaded weights back, one shard at a time (one readback per piece). */
export async function* weightShards(gpu: Gpu, plan: Plan): AsyncGenerator<ShardLayout & { data: Uint8Array }> {
  for (const s of shardLayout(plan)) {
    const data = new Uint8Array(s.pieces.reduce((n, p) => n + p.bytes, 0));
    let at = 0;
    for (const p of s.pieces) {
      data.set(new Uint8Array(await gpu.read(plan.tensor(p.name), p.offset, p.bytes)), at);
      at += p.bytes;
    }
    yield { ...s, data };
  }
}

/**
 * Uploads cached shards into the plan's weight buffers and assembles the model's weights. Every
 * cached buffer must be covered exactly once by the pieces, with the sizes the plan expects;
 * otherwise the cache entry belongs to another config or quantization and is refused.
 */
export async function loadCachedWeights(
  gpu: Gpu, cfg: ModelConfig, plan: Plan, shards: AsyncIterable<{ id: string; pieces: ShardPiece[]; data: Uint8Array }>,
  onProgress?: (done: number) => void,
): Promise<ModelWeights> {
  const expected = new Map(cachedRows(plan).map((r) => [r.name, r]));
  const covered = new Map<string, number>();
  const bad = (shard: string, why: string, tensor?: string) =>
    new ModelFileError(`The cached weights do not fit this model: ${why}.`, 'Delete the cached model and load it again from its source.',
      { file: shard, tensor, reason: 'cache-mismatch' });
  let done = 0;
  for await (const s of shards) {
    let at = 0;
    for (const p of s.pieces) {
      const row = expected.get(p.name);
      if (!row) throw bad(s.id, `shard ${s.id} holds "${p.name}", which this model does not have`, p.name);
      if (p.offset < 0 || p.offset + p.bytes > row.bytes || p.offset % 4 || p.bytes % 4) throw bad(s.id, `piece of "${p.name}" out of range`, p.name);
      let t: Tensor;
      try {
        t = plan.tensor(p.name);
      } catch {
        t = plan.alloc(gpu, p.name);
      }
      gpu.upload(t, s.data.subarray(at, at + p.bytes), p.offset);
      covered.set(p.name, (covered.get(p.name) ?? 0) + p.bytes);
      at += p.bytes;
    }
    if (at !== s.data.length) throw bad(s.id, `shard ${s.id} has ${s.data.length - at} bytes its manifest does not describe`);
    onProgress?.(++done);
  }
  for (const [name, row] of expected) {
    if (covered.get(name) !== row.bytes) throw bad('manifest', `"${name}" has ${covered.get(name) ?? 0} of its ${row.bytes} bytes`, name);
  }
  return assembleWeights(gpu, cfg, plan);
}

/** Gemma 3's sliding-layer RoPE tables: rope_local_base_freq, default rope type (Gemma3TextModel's
 *  rotary_emb_local), or null when every layer shares one RoPE. */
export function localRopeTables(cfg: ModelConfig, maxPositions: number): { cos: Float32Array; sin: Float32Array } | null {
  if (!cfg.ropeLocalTheta) return null;
  return ropeTablesFor({ headDim: cfg.headDim, ropeTheta: cfg.ropeLocalTheta, rope: defaultRope(cfg.maxPositionEmbeddings) }, maxPositions);
}

/** The RoPE tables of a run, uploaded into their planned buffers (LongRoPE generation: both sets;
 *  Gemma 3: the sliding layers' own too). */
export function uploadRopeTables(gpu: Gpu, cfg: ModelConfig, plan: Plan): Pick<ModelWeights, 'ropeCos' | 'ropeSin' | 'ropeLong' | 'ropeLocalCos' | 'ropeLocalSin'> {
  const put = (name: string, data: Float32Array) => {
    const t = plan.alloc(gpu, name);
    gpu.upload(t, data);
    return t;
  };
  const P = plan.opts.maxPositions, both = needsLongTables(cfg, plan.opts.kvCache ?? false, P);
  const base = ropeTablesFor(cfg, P, both ? false : undefined);
  const ropeCos = put('rope.cos', base.cos), ropeSin = put('rope.sin', base.sin);
  const local = localRopeTables(cfg, P);
  const ropeLocal = local ? { ropeLocalCos: put('rope.local.cos', local.cos), ropeLocalSin: put('rope.local.sin', local.sin) } : {};
  if (!both) return { ropeCos, ropeSin, ...ropeLocal };
  const long = ropeTablesFor(cfg, P, true);
  return { ropeCos, ropeSin, ...ropeLocal, ropeLong: { cos: put('rope.cos.long', long.cos), sin: put('rope.sin.long', long.sin), from: cfg.rope.originalMaxPositionEmbeddings } };
}

/** ModelWeights over the plan's allocated weight buffers (the RoPE tables are built here). */
export function assembleWeights(gpu: Gpu, cfg: ModelConfig, plan: Plan): ModelWeights {
  const quant = plan.opts.quant;
  const rope = uploadRopeTables(gpu, cfg, plan);
  const has = (n: string) => plan.rows.some((r) => r.name === n);
  const layers: LayerWeights[] = [];
  for (let l = 0; l < cfg.numLayers; l++) {
    const proj = {} as Record<Proj, BaseLinear>;
    for (const p of PROJS) {
      const [N, K] = linearShape(cfg, p);
      const pre = `layers.${l}.${p}`;
      const bias = has(`${pre}.bias`) ? plan.tensor(`${pre}.bias`) : undefined;
      proj[p] = quant === 'nf4'
        ? { kind: 'nf4', packed: plan.tensor(`${pre}.weight`), absmax: plan.tensor(`${pre}.absmax`), doubleQuant: plan.opts.doubleQuant ?? false, bias, N, K }
        : { kind: 'f32', w: plan.tensor(`${pre}.weight`), bias, N, K };
    }
    // The cached norms hold what the loader uploaded (Gemma's 1 + w included).
    const norms: Partial<LayerWeights> = {};
    for (const n of layerNormNames(cfg)) norms[layerNormField(cfg, n)] = plan.tensor(`layers.${l}.${n}`);
    layers.push({ ...norms, proj } as LayerWeights);
  }
  const table = plan.tensor('embed'), f16 = plan.tablesF16;
  const chunks = embeddingChunks(cfg.vocabSize, cfg.hiddenSize, gpu.limits, f16 ? 2 : 4);
  const embed = embeddingViews(table, cfg.vocabSize, cfg.hiddenSize, chunks, 256, f16);
  const head = cfg.tieWordEmbeddings ? table : plan.tensor('head');
  return { embed, head, headF16: f16, norm: plan.tensor('norm'), layers, ...rope };
}
