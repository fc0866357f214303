// A merged model: the base with each LoRA delta added into its weight, written as a Hugging Face
// model folder the way `model.merge_and_unload().save_pretrained(dir)` writes it:
//   - W' = W + scaling·(B·A) for each adapted projection, as PEFT's LoRA Linear.merge does: the delta
//     in f32 (get_delta_weight with f32 adapter weights), added to W in f32 by torch's in-place add
//     and rounded once to W's dtype (round to nearest even for bf16/f16, src/export/float16.ts);
//   - every other tensor's bytes copied unchanged, in its own dtype;
//   - `fromNf4`: the base linear weights are first taken through NF4 (quantize, dequantize: what the
//     QLoRA run trained against), cast to the base dtype as bitsandbytes' dequantize_4bit returns
//     them, then merged. Unlike PEFT's 4-bit merge we do not quantize the sum again: the point of a
//     merged export is a 16-bit model, and re-quantizing would round most of the delta away;
//   - shards of at most `maxShardSize` bytes of tensor data (2 GB, decimal, like save_pretrained's
//     max_shard_size="2GB"), cut in state_dict order as huggingface_hub's
//     split_state_dict_into_shards_factory cuts them; one shard is `model.safetensors`, several are
//     `model-0000i-of-0000n.safetensors` plus `model.safetensors.index.json`
//     (json.dumps(index, indent=2, sort_keys=True) + "\n", weight_map sorted, metadata.total_size).
// Streaming: tensors are read from the base, merged and written one at a time, so at most one base
// tensor (plus the adapter, which is small) is in memory. Host-neutral: the caller opens files.
import { ModelFileError } from '../errors.ts';
import type { ModelFolder, FolderTensor } from '../io/model-folder.ts';
import { INDEX_FILE, SINGLE_FILE } from '../io/model-folder.ts';
import { linearModulePath } from '../io/hf-names.ts';
import { type LoadedAdapter } from '../io/peft.ts';
import { peftScaling } from '../model/lora.ts';
import { planSafetensors, toFloat32, type DType } from '../io/safetensors.ts';
import type { ModelConfig } from '../model/config.ts';
import { checkWeights, expectedWeights } from '../model/weights.ts';
import { dequantizeNF4, doubleDequantize, doubleQuantize, quantizeNF4 } from '../quant/nf4.ts';
import { encode16, littleEndianBytes } from './float16.ts';

export const DEFAULT_MAX_SHARD_SIZE = 2_000_000_000;

export interface FileSink {
  write(chunk: Uint8Array): Promise<void>;
  close(): Promise<void>;
}

export interface MergeOptions {
  fromNf4?: boolean;
  /** With fromNf4: absmax double-quantized as the run's --double-quant did. */
  doubleQuant?: boolean;
  maxShardSize?: number;
  onTensor?: (name: string, done: number, total: number) => void;
}

export interface MergeResult {
  /** Weight files written (shards, then the index when there is one). */
  files: string[];
  /** Base tensor names whose values changed. */
  merged: string[];
}

// Registration order of LlamaDecoderLayer's parameters (self_attn q, k, v, o; mlp gate, up, down;
// the two norms), which is the order of model.state_dict() and so of save_pretrained's shards.
const LAYER_ORDER = [
  'self_attn.q_proj.weight', 'self_attn.q_proj.bias', 'self_attn.k_proj.weight', 'self_attn.k_proj.bias',
  'self_attn.v_proj.weight', 'self_attn.v_proj.bias', 'self_attn.o_proj.weight', 'self_attn.o_proj.bias',
  'mlp.gate_proj.weight', 'mlp.up_proj.weight', 'mlp.down_proj.weight', 'input_layernorm.weight', 'post_attention_layernorm.weight',
  'pre_feedforward_layernorm.weight', 'post_feedforward_layernorm.weight', // Gemma 2/3
];

/** state_dict order: embed_tokens, layers in index order, norm, lm_head; anything else after, as found. */
export function stateDictOrder(names: readonly string[]): string[] {
  const key = (n: string): number[] => {
    if (n === 'model.embed_tokens.weight') return [0];
    const m = /^model\.layers\.(\d+)\.(.+)$/.exec(n);
    if (m) {
      const i = LAYER_ORDER.indexOf(m[2]);
      return [1, Number(m[1]), i < 0 ? LAYER_ORDER.length : i];
    }
    if (n === 'model.norm.weight') return [2];
    if (n === 'lm_head.weight') return [3];
    return [4];
  };
  const keyed = names.map((n, i) => ({ n, k: [...key(n), i] }));
  keyed.sort((a, b) => {
    for (let j = 0; j < Math.max(a.k.length, b.k.length); j++) {
      const d = (a.k[j] ?? -1) - (b.k[j] ?? -1);
      if (d) return d;
    }
    return 0;
  });
  return keyed.map((x) => x.n);
}

/** huggingface_hub's shard split: in order, a tensor over the limit gets a shard of its own; a tensor
 *  that would take the current shard over the limit starts a new one. */
export function splitShards(sizes: readonly (readonly [string, number])[], maxShardSize: number): string[][] {
  const shards: string[][] = [];
  let cur: string[] = [], curSize = 0;
  for (const [name, size] of sizes) {
    if (size > maxShardSize) {
      shards.push([name]);
      continue;
    }
    if (curSize + size > maxShardSize && cur.length) {
      shards.push(cur);
      cur = [];
      curSize = 0;
    }
    cur.push(name);
    curSize += size;
  }
  if (cur.length) shards.push(cur);
  return shards;
}

export function shardFileName(i: number, n: number): string {
  return n === 1 ? SINGLE_FILE : `model-${String(i + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`;
}

/** model.safetensors.index.json text as transformers writes it. */
export function shardIndexJson(totalSize: number, weightMap: ReadonlyMap<string, string>): string {
  const sorted = [...weightMap.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)); // Python sorts by code point
  const doc = { metadata: { total_size: totalSize }, weight_map: Object.fromEntries(sorted.map((k) => [k, weightMap.get(k)!])) };
  return JSON.stringify(doc, null, 2) + '\n';
}

/** scaling·(B·A) for B (out, r) and A (r, in), in f32: each product and partial sum rounded to f32
 *  as an f32 GEMM does, then the scaling multiply rounded. */
export function loraDelta(A: Float32Array, B: Float32Array, out: number, r: number, inp: number, scaling: number): Float32Array {
  const d = new Float32Array(out * inp);
  for (let i = 0; i < out; i++) {
    for (let j = 0; j < inp; j++) {
      let s = 0;
      for (let k = 0; k < r; k++) s = Math.fround(s + Math.fround(B[i * r + k] * A[k * inp + j]));
      d[i * inp + j] = Math.fround(s * scaling);
    }
  }
  return d;
}

/** NF4 round trip of a weight, as the QLoRA run saw it (f32 values). */
export function nf4RoundTrip(w: Float32Array, doubleQuant = false): Float32Array {
  const q = quantizeNF4(w);
  const absmax = doubleQuant ? doubleDequantize(doubleQuantize(q.absmax)) : q.absmax;
  return dequantizeNF4(q.packed, absmax, w.length);
}

/** f32 values rounded to `dtype` and back (for F32, the same values). */
function roundTo(dtype: DType, x: Float32Array): Float32Array {
  return dtype === 'F32' ? x : toFloat32(dtype, encodeAs(dtype, x));
}

function encodeAs(dtype: DType, x: Float32Array): Uint8Array {
  if (dtype === 'F32') return littleEndianBytes(x);
  if (dtype === 'BF16' || dtype === 'F16') return encode16(x, dtype);
  throw new ModelFileError(`Cannot write a merged weight as ${dtype}.`, 'Merging needs an F32, F16 or BF16 base model.', { dtype });
}

interface Adapted {
  A: Float32Array;
  B: Float32Array;
  r: number;
}

/** Writes the merged weights through `open` (one call per file, written front to back). */
export async function writeMergedWeights(
  folder: ModelFolder, config: ModelConfig, adapter: LoadedAdapter, open: (name: string) => Promise<FileSink>, opts: MergeOptions = {},
): Promise<MergeResult> {
  const index = await folder.tensorIndex();
  const check = checkWeights(config, index);
  if (check.problems.length) {
    const p = check.problems[0];
    throw new ModelFileError(`Cannot merge: base tensor "${p.name}" is ${p.kind === 'missing' ? 'missing' : `of shape [${p.found}], expected [${p.expected}]`}.`,
      'The base folder does not match its config.json; use the model the adapter was trained on.', { tensor: p.name, file: index.get(p.name)?.file });
  }
  const quantizable = new Set(expectedWeights(config).filter((s) => s.quantizable).map((s) => s.name));
  const scaling = peftScaling(adapter.config);
  const adapted = new Map<string, Adapted>();
  for (const s of adapter.specs) {
    if (s.which !== 'A') continue;
    const base = `${linearModulePath(s.layer, s.module)}.weight`;
    const A = adapter.weights.get(s.key)!, B = adapter.weights.get(s.key.replace('.lora_A.', '.lora_B.'))!;
    adapted.set(base, { A, B, r: s.shape[0] });
  }

  const names = stateDictOrder([...index.keys()]);
  const shards = splitShards(names.map((n) => [n, index.get(n)!.end - index.get(n)!.begin] as const), opts.maxShardSize ?? DEFAULT_MAX_SHARD_SIZE);
  const weightMap = new Map<string, string>();
  const files: string[] = [];
  const merged: string[] = [];
  let done = 0, totalSize = 0;
  for (const [i, shard] of shards.entries()) {
    const file = shardFileName(i, shards.length);
    const plan = planSafetensors(shard.map((n) => {
      const t = index.get(n)!;
      return [n, { dtype: t.dtype, shape: t.shape, data: { byteLength: t.end - t.begin }, source: t }] as const;
    }));
    const sink = await open(file);
    try {
      await sink.write(plan.head);
      for (const { name, tensor } of plan.order) {
        const bytes = await mergedBytes(tensor.source, adapted.get(name), quantizable.has(name) && Boolean(opts.fromNf4), scaling, Boolean(opts.doubleQuant));
        if (bytes.changed) merged.push(name);
        await sink.write(bytes.data);
        weightMap.set(name, file);
        totalSize += bytes.data.byteLength;
        opts.onTensor?.(name, ++done, names.length);
      }
    } finally {
      await sink.close();
    }
    files.push(file);
  }
  if (shards.length > 1) {
    const sink = await open(INDEX_FILE);
    try {
      await sink.write(new TextEncoder().encode(shardIndexJson(totalSize, weightMap)));
    } finally {
      await sink.close();
    }
    files.push(INDEX_FILE);
  }
  return { files, merged };
}

async function mergedBytes(t: FolderTensor, a: Adapted | undefined, nf4: boolean, scaling: number, doubleQuant: boolean): Promise<{ data: Uint8Array; changed: boolean }> {
  if (!a && !nf4) return { data: await t.readBytes(), changed: false };
  let w = await t.readFloat32();
  if (nf4) w = roundTo(t.dtype, nf4RoundTrip(w, doubleQuant));
  if (a) {
    const [out, inp] = t.shape;
    const d = loraDelta(a.A, a.B, out, a.r, inp, scaling);
    const sum = new Float32Array(w.length);
    for (let i = 0; i < w.length; i++) sum[i] = w[i] + d[i]; // the store rounds to f32, as torch's f32 add
    w = sum;
  }
  return { data: encodeAs(t.dtype, w), changed: true };
}
