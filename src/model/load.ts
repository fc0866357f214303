// Loading a Hugging Face checkpoint onto the GPU, one tensor at a time: each tensor is read,
// converted to f32 (from F16/BF16), uploaded (the embedding and lm_head as f16 pairs under storage
// 'f16'), and, for the seven linear projections under NF4, quantized on the GPU through one staging
// buffer (with double quantization, its absmax then coded to 8 bits on the CPU). The JS heap holds at most one tensor; the GPU
// never holds a quantized weight in full precision beyond that staging buffer.
import type { Gpu, Tensor } from '../gpu/runtime.ts';
import { ModelFileError } from '../errors.ts';
import type { ModelFolder } from '../io/model-folder.ts';
import type { ModelConfig } from './config.ts';
import { uploadRopeTables } from './load-cached.ts';
import { checkWeights, fusedSplit } from './weights.ts';
import { checkFiniteWeight } from './finite.ts';
import { nf4Quantize } from '../kernels/nf4_quantize.ts';
import { doubleQuantWords } from '../quant/nf4.ts';
import { embeddingChunks, embeddingViews, type EmbeddingTable } from '../kernels/embedding.ts';
import { packF16 } from '../kernels/matmul_packed_f16.ref.ts';
import { PROJS, type Proj } from './lora.ts';
import { type CheckpointModule, FUSED_PARTS, linearShape } from '../io/hf-names.ts';
import type { BaseLinear, LayerWeights, ModelWeights } from './llama.ts';
import type { Plan } from './plan.ts';

export interface LoadProgress {
  tensor: string;
  done: number;
  total: number;
}

function tooBig(what: string, bytes: number, limit: number): ModelFileError {
  return new ModelFileError(
    `The ${what} (${bytes} bytes) is larger than one GPU storage binding on this device (${limit} bytes).`,
    'This device cannot hold the output layer in one piece; try a model with a smaller vocabulary or a GPU with larger binding limits.',
    { tensor: what },
  );
}

type NormField = 'inputNorm' | 'postNorm' | 'qNorm' | 'kNorm' | 'attnOutNorm' | 'mlpOutNorm';

/** Which LayerWeights slot a layer's norm (HF name, without "self_attn.") fills. postNorm is the MLP's
 *  input norm: HF's post_attention_layernorm, except in Gemma 2/3, where that name norms the
 *  attention output and pre_feedforward_layernorm is the MLP's input norm. */
export function layerNormField(cfg: Pick<ModelConfig, 'sandwichNorms'>, name: string): NormField {
  switch (name) {
    case 'input_layernorm': return 'inputNorm';
    case 'post_attention_layernorm': return cfg.sandwichNorms ? 'attnOutNorm' : 'postNorm';
    case 'pre_feedforward_layernorm': return 'postNorm';
    case 'post_feedforward_layernorm': return 'mlpOutNorm';
    case 'q_norm': return 'qNorm';
    case 'k_norm': return 'kNorm';
  }
  throw new Error(`load: unknown layer norm ${name}`);
}

/** The plan names of a layer's norms (as the loader uploads them) for this config. */
export function layerNormNames(cfg: Pick<ModelConfig, 'sandwichNorms' | 'qkNorm'>): string[] {
  return ['input_layernorm', 'post_attention_layernorm', ...(cfg.sandwichNorms ? ['pre_feedforward_layernorm', 'post_feedforward_layernorm'] : []),
    ...(cfg.qkNorm ? ['q_norm', 'k_norm'] : [])];
}

export async function loadWeights(
  gpu: Gpu, folder: ModelFolder, cfg: ModelConfig, plan: Plan, onProgress?: (p: LoadProgress) => void,
): Promise<ModelWeights> {
  const index = await folder.tensorIndex();
  const check = checkWeights(cfg, index);
  if (check.problems.length) {
    const lines = check.problems.map((p) =>
      p.kind === 'missing' ? `${p.name}: missing (expected shape [${p.expected}])` : `${p.name}: shape [${p.found}] but the config implies [${p.expected}]`);
    throw new ModelFileError(
      `The weights do not match config.json:\n  ${lines.slice(0, 10).join('\n  ')}${lines.length > 10 ? `\n  ... and ${lines.length - 10} more` : ''}`,
      'Check that config.json and the .safetensors files come from the same model.',
      { file: folder.shards[0], tensor: check.problems[0].name, problems: check.problems },
    );
  }
  const quant = plan.opts.quant, doubleQuant = quant === 'nf4' && (plan.opts.doubleQuant ?? false);
  const V = cfg.vocabSize, C = cfg.hiddenSize;
  // f16 storage: the embedding and head are rounded to f16 here as torch's .half() does, and packed.
  const f16 = plan.tablesF16, bytes = f16 ? 2 : 4;
  const binding = Math.min(gpu.limits.maxStorageBufferBindingSize, gpu.limits.maxBufferSize);
  // The logits matmul binds the whole (V, C) head; the gather can use chunks of it.
  if (V * C * bytes > binding) throw tooBig(cfg.tieWordEmbeddings ? 'tied embedding / lm_head' : 'lm_head', V * C * bytes, binding);

  const staging = quant === 'nf4' ? plan.alloc(gpu, 'load.staging') : undefined;
  const absmaxF32 = doubleQuant ? plan.alloc(gpu, 'load.absmax') : undefined;
  const layers: Partial<LayerWeights>[] = Array.from({ length: cfg.numLayers }, () => ({ proj: {} as Record<Proj, BaseLinear> }));
  let embed: EmbeddingTable | undefined, head: Tensor | undefined, norm: Tensor | undefined;
  const wanted = new Set(index.keys());
  const biases = new Map<string, Tensor>(); // `${layer}.${proj}`: attached once every tensor is in
  let done = 0;
  const upload = (name: string, data: Float32Array | Uint32Array) => {
    const t = plan.alloc(gpu, name);
    gpu.upload(t, data);
    return t;
  };
  const linear = async (name: string, N: number, K: number, data: Float32Array): Promise<BaseLinear> => {
    if (quant !== 'nf4') return { kind: 'f32', w: upload(`${name}.weight`, data), N, K };
    gpu.upload(staging!, data);
    const packed = plan.alloc(gpu, `${name}.weight`), absmax = plan.alloc(gpu, `${name}.absmax`);
    const blocks = Math.ceil((N * K) / 64);
    const f32Absmax = absmaxF32 ? { tensor: absmaxF32, offset: 0, size: blocks * 4 } : absmax;
    nf4Quantize(gpu, packed, f32Absmax, { tensor: staging!, offset: 0, size: N * K * 4 }, N * K);
    if (absmaxF32) {
      // bitsandbytes compress_statistics: absmax itself quantized to 8 bits (blocks of 256, offset =
      // mean), coded on the CPU (1/64 of the weight count) and kept in that form: the NF4 kernels
      // decode it per block (0.127 instead of 0.5 bits per weight).
      gpu.upload(absmax, doubleQuantWords(new Float32Array(await gpu.read(absmaxF32, 0, blocks * 4))));
    }
    return { kind: 'nf4', packed, absmax, doubleQuant, N, K };
  };
  if (quant === 'nf4') fusedSplit(cfg);
  for await (const t of folder.tensors()) {
    if (!wanted.has(t.name)) continue;
    const data = await t.readFloat32();
    checkFiniteWeight(data, t.name, t.file);
    const m = /^model\.layers\.(\d+)\.(?:self_attn|mlp)\.(\w+_proj)\.(weight|bias)$/.exec(t.name);
    const n = /^model\.layers\.(\d+)\.(input_layernorm|post_attention_layernorm|pre_feedforward_layernorm|post_feedforward_layernorm|self_attn\.q_norm|self_attn\.k_norm)\.weight$/.exec(t.name);
    // GemmaRMSNorm scales by (1 + w) in f32: the 1 is added once here, to the same f32 values.
    if (cfg.normOffset && (n || t.name === 'model.norm.weight')) for (let i = 0; i < data.length; i++) data[i] += 1;
    if (t.name === 'model.embed_tokens.weight') {
      const table = upload('embed', f16 ? packF16(data) : data);
      embed = embeddingViews(table, V, C, embeddingChunks(V, C, gpu.limits, bytes), 256, f16);
      if (cfg.tieWordEmbeddings) head = table;
    } else if (t.name === 'lm_head.weight') {
      if (!cfg.tieWordEmbeddings) head = upload('head', f16 ? packF16(data) : data);
    } else if (t.name === 'model.norm.weight') {
      norm = upload('norm', data);
    } else if (n) {
      const l = Number(n[1]);
      const name = n[2].replace('self_attn.', '');
      layers[l][layerNormField(cfg, name)] = upload(`layers.${l}.${name}`, data);
    } else if (m) {
      const l = Number(m[1]), module = m[2] as CheckpointModule;
      const [N, K] = [t.shape[0], t.shape[1] ?? 1];
      if (m[3] === 'bias') {
        biases.set(`${l}.${module}`, upload(`layers.${l}.${module}.bias`, data));
        onProgress?.({ tensor: t.name, done: ++done, total: wanted.size });
        continue;
      }
      // Phi-3's fused matrices are split by output rows into the projections the engine computes.
      // Rows are contiguous, so a part whose first element starts an NF4 block of 64 gets exactly
      // the codes and absmax the fused matrix quantized as one would (fusedSplit checks this).
      const parts: readonly Proj[] = module === 'qkv_proj' || module === 'gate_up_proj' ? FUSED_PARTS[module] : [module];
      let row = 0;
      for (const p of parts) {
        const n = parts.length === 1 ? N : linearShape(cfg, p)[0];
        layers[l].proj![p] = await linear(`layers.${l}.${p}`, n, K, data.subarray(row * K, (row + n) * K));
        row += n;
      }
    }
    onProgress?.({ tensor: t.name, done: ++done, total: wanted.size });
  }
  const rope = uploadRopeTables(gpu, cfg, plan);
  gpu.flush();
  if (staging) plan.free(gpu, 'load.staging');
  if (absmaxF32) plan.free(gpu, 'load.absmax');
  await gpu.check();
  for (const [l, w] of layers.entries()) {
    for (const p of PROJS) {
      if (!w.proj![p]) throw new Error(`load: layer ${l} ${p} was not loaded`);
      w.proj![p].bias = biases.get(`${l}.${p}`);
    }
  }
  return { embed: embed!, head: head!, headF16: f16, norm: norm!, layers: layers as LayerWeights[], ...rope };
}
