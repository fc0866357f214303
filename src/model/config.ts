// Hugging Face config.json -> one typed ModelConfig for the Llama family we support (llama: Llama
// 2/3/3.1/3.2, SmolLM2, TinyLlama; mistral; qwen2; qwen3; phi3: Phi-3/3.5-mini; gemma, gemma2, gemma3_text).
// Defaults are the transformers config classes' own (configuration_{llama,mistral,qwen2,qwen3,phi3,gemma,gemma2,gemma3}.py;
// docs/formats.md#hugging-face-model-configs), so a
// config that omits a field means what it means in Python. The shape fields have no default here
// on purpose: LlamaConfig would silently fill in a 7B shape. RoPE fields are parsed by rope.ts.

import { ModelFileError } from '../errors.ts';
import { parseRope, type RopeConfig } from './rope.ts';

export type Arch = 'llama' | 'mistral' | 'qwen2' | 'qwen3' | 'phi3' | 'gemma' | 'gemma2' | 'gemma3_text';

/** model_type -> the transformers class names that carry it. */
export const SUPPORTED_ARCHITECTURES: Readonly<Record<Arch, string>> = {
  llama: 'LlamaForCausalLM',
  mistral: 'MistralForCausalLM',
  qwen2: 'Qwen2ForCausalLM',
  qwen3: 'Qwen3ForCausalLM',
  phi3: 'Phi3ForCausalLM',
  gemma: 'GemmaForCausalLM',
  gemma2: 'Gemma2ForCausalLM',
  gemma3_text: 'Gemma3ForCausalLM',
};

const GEMMA: ReadonlySet<Arch> = new Set(['gemma', 'gemma2', 'gemma3_text']);

export interface ModelConfig {
  arch: Arch;
  vocabSize: number; // V
  hiddenSize: number; // C
  intermediateSize: number; // F
  numLayers: number; // L
  numHeads: number; // H
  numKvHeads: number; // Hkv
  headDim: number; // D: config head_dim, else C / H
  rmsNormEps: number;
  ropeTheta: number;
  rope: RopeConfig;
  tieWordEmbeddings: boolean;
  /** q/k/v projections have a bias (always for qwen2; llama and qwen3 `attention_bias`). */
  attentionBias: boolean;
  /** o_proj has a bias (llama and qwen3 `attention_bias`; never for qwen2). */
  oProjBias: boolean;
  /** Per-head RMSNorm of q and k (weights of size head_dim) after the projection, before RoPE (qwen3). */
  qkNorm: boolean;
  /** Phi-3: the checkpoint holds qkv_proj and gate_up_proj; the loader splits them by output rows
   *  into the seven projections and LoRA adapts the fused modules (see hf-names.ts). */
  fusedProjections: boolean;
  maxPositionEmbeddings: number;
  /** The sliding attention window in tokens (Mistral; Qwen2/3 with use_sliding_window); null = none. */
  slidingWindow: number | null;
  /** Per layer: its attention window in tokens, 0 = full causal attention. Mistral slides in every
   *  layer; Qwen2/3 in the layers `layer_types` marks "sliding_attention", by default those from
   *  max_window_layers on (configuration_qwen2.py / configuration_qwen3.py). */
  layerWindows: number[];
  bosTokenId: number | null;
  /** eos_token_id may be a list (Llama 3.1: end_of_text, eom, eot). */
  eosTokenIds: number[];
  /** `torch_dtype` (or v5 `dtype`) as written, e.g. "bfloat16"; informational. */
  torchDtype: string | null;
  // Gemma (gemma, gemma2, gemma3_text); the other families take the neutral values.
  /** The gated MLP's activation: 'silu' (SwiGLU) or 'gelu_tanh' (Gemma's gelu_pytorch_tanh GeGLU). */
  hiddenAct: 'silu' | 'gelu_tanh';
  /** Every RMSNorm weight w (layers, final, q/k norms) is applied as (1 + w) (GemmaRMSNorm). */
  normOffset: boolean;
  /** Factor on the embedding rows: Gemma's sqrt(hidden_size) rounded to the weights' dtype, else 1. */
  embedScale: number;
  /** Attention score scale: head_dim^-0.5, or query_pre_attn_scalar^-0.5 (Gemma 2/3). */
  attnScale: number;
  /** Attention-logit softcap (Gemma 2's attn_logit_softcapping), 0 = none. */
  attnSoftcap: number;
  /** Final-logit softcap (final_logit_softcapping), 0 = none. */
  finalSoftcap: number;
  /** Gemma 2/3's four norms per layer: post_attention_layernorm on the attention output,
   *  pre_feedforward_layernorm on the MLP input, post_feedforward_layernorm on its output. */
  sandwichNorms: boolean;
  /** Gemma 3: the RoPE base of the sliding layers (rope_local_base_freq, default rope type), whose
   *  tables differ from the full layers'; null = one RoPE for every layer. */
  ropeLocalTheta: number | null;
}

interface ArchDefaults {
  maxPositionEmbeddings: number;
  rmsNormEps: number;
  bos: number | null;
  eos: number[];
  slidingWindow: number | null;
}

// From the transformers configuration_*.py defaults. Qwen2Config sets no bos/eos.
const DEFAULTS: Record<Arch, ArchDefaults> = {
  llama: { maxPositionEmbeddings: 2048, rmsNormEps: 1e-6, bos: 1, eos: [2], slidingWindow: null },
  mistral: { maxPositionEmbeddings: 131072, rmsNormEps: 1e-6, bos: 1, eos: [2], slidingWindow: 4096 },
  qwen2: { maxPositionEmbeddings: 32768, rmsNormEps: 1e-6, bos: null, eos: [], slidingWindow: null },
  qwen3: { maxPositionEmbeddings: 32768, rmsNormEps: 1e-6, bos: null, eos: [], slidingWindow: null },
  phi3: { maxPositionEmbeddings: 4096, rmsNormEps: 1e-5, bos: 1, eos: [32000], slidingWindow: null },
  gemma: { maxPositionEmbeddings: 8192, rmsNormEps: 1e-6, bos: 2, eos: [1], slidingWindow: null },
  gemma2: { maxPositionEmbeddings: 8192, rmsNormEps: 1e-6, bos: 2, eos: [1], slidingWindow: 4096 },
  gemma3_text: { maxPositionEmbeddings: 131072, rmsNormEps: 1e-6, bos: 2, eos: [1], slidingWindow: 4096 },
};

/** x rounded to a float dtype the way torch.tensor(x, dtype=...) stores it (round to nearest even). */
export function roundToDtype(x: number, dtype: string | null): number {
  const f = Math.fround(x);
  if (dtype === 'bfloat16') {
    const u = new Uint32Array(new Float32Array([f]).buffer)[0];
    const r = (u + 0x7fff + ((u >>> 16) & 1)) & 0xffff0000;
    return new Float32Array(new Uint32Array([r >>> 0]).buffer)[0];
  }
  if (dtype === 'float16') {
    const h = new Float32Array([f]);
    // Round to 11 significant bits (normal f16 range; sqrt(hidden_size) is far from its limits).
    const e = Math.floor(Math.log2(Math.abs(h[0])));
    const q = 2 ** (e - 10);
    return Math.round(h[0] / q) * q;
  }
  return f;
}

const CLASS_TO_ARCH = new Map(Object.entries(SUPPORTED_ARCHITECTURES).map(([a, c]) => [c, a as Arch]));

export function parseModelConfig(json: unknown, file = 'config.json'): ModelConfig {
  const err = (message: string, hint: string, details: Record<string, unknown> = {}) =>
    new ModelFileError(`${file}: ${message}`, hint, { file, ...details });
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw err('not a JSON object.', 'Choose the config.json of a Hugging Face model.');
  }
  const cfg = json as Record<string, unknown>;

  const arch = detectArch(cfg, file);
  const d = DEFAULTS[arch];

  const field = (name: string) => cfg[name];
  const posInt = (name: string, fallback?: number): number => {
    const v = field(name);
    if (v === undefined || v === null) {
      if (fallback !== undefined) return fallback;
      throw err(`the required field "${name}" is missing.`, 'The config is incomplete; download config.json again from the model repository.', { field: name });
    }
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
      throw err(`"${name}" must be a positive integer, got ${JSON.stringify(v)}.`, 'The config is damaged.', { field: name });
    }
    return v;
  };
  const posNum = (name: string, fallback: number, obj: Record<string, unknown> = cfg, where = ''): number => {
    const v = obj[name];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      throw err(`"${where}${name}" must be a positive number, got ${JSON.stringify(v)}.`, 'The config is damaged.', { field: where + name });
    }
    return v;
  };
  const posIntOrZero = (name: string): number => {
    const v = field(name);
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
      throw err(`"${name}" must be a non-negative integer, got ${JSON.stringify(v)}.`, 'The config is damaged.', { field: name });
    }
    return v;
  };
  const bool = (name: string, fallback: boolean): boolean => {
    const v = field(name);
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'boolean') throw err(`"${name}" must be true or false, got ${JSON.stringify(v)}.`, 'The config is damaged.', { field: name });
    return v;
  };

  const vocabSize = posInt('vocab_size');
  const hiddenSize = posInt('hidden_size');
  const intermediateSize = posInt('intermediate_size');
  const numLayers = posInt('num_hidden_layers');
  const numHeads = posInt('num_attention_heads');
  const numKvHeads = posInt('num_key_value_heads', numHeads);
  const gemma = GEMMA.has(arch);
  // Qwen3Config's head_dim defaults to 128 and the Gemma configs' to 256, whatever hidden_size /
  // num_attention_heads is.
  const headDimDefault = arch === 'qwen3' ? 128 : gemma ? 256 : undefined;
  if (headDimDefault === undefined && (field('head_dim') === undefined || field('head_dim') === null)) {
    if (hiddenSize % numHeads !== 0) {
      throw err(`hidden_size ${hiddenSize} is not divisible by num_attention_heads ${numHeads}, and head_dim is not given.`,
        'The config is inconsistent.', { field: 'head_dim' });
    }
  }
  const headDim = posInt('head_dim', headDimDefault ?? hiddenSize / numHeads);
  if (numHeads % numKvHeads !== 0) {
    throw err(`num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}.`,
      'Grouped-query attention needs whole groups; the config is inconsistent.', { field: 'num_key_value_heads' });
  }

  // Gemma2MLP / Gemma3MLP read hidden_activation (default gelu_pytorch_tanh). Gemma 1 files say
  // hidden_act "gelu" and hidden_activation "gelu_pytorch_tanh", the activation Google trained with
  // (GemmaConfig documents hidden_activation as overriding hidden_act), so it is read first there.
  // Only the tanh GELU is implemented for the Gemma families.
  const actField = arch === 'gemma2' || arch === 'gemma3_text' || (arch === 'gemma' && field('hidden_activation') != null) ? 'hidden_activation' : 'hidden_act';
  const act = field(actField) ?? (gemma ? 'gelu_pytorch_tanh' : 'silu');
  const wantAct = gemma ? 'gelu_pytorch_tanh' : 'silu';
  if (act !== wantAct) {
    throw err(`${actField} "${String(act)}" is not supported (only "${wantAct}" for ${arch}).`,
      gemma ? 'Gemma was trained with the tanh GELU; only that is implemented. If this checkpoint is meant to use it, add "hidden_activation": "gelu_pytorch_tanh" to config.json.' : 'Llama, Mistral and Qwen2 models use SiLU; this config is unusual.', { field: actField });
  }
  if (gemma && bool('use_bidirectional_attention', false)) {
    throw err('use_bidirectional_attention: true (EmbeddingGemma) is not supported: this engine trains causal decoders.',
      'Choose a causal Gemma checkpoint (gemma-3-270m, gemma-3-1b, gemma-2-2b).', { field: 'use_bidirectional_attention' });
  }
  if (bool('mlp_bias', false)) {
    throw err('mlp_bias: true is not supported yet.', 'Use a model without MLP biases (standard Llama checkpoints have none).', { field: 'mlp_bias' });
  }
  // Llama, Qwen3 and Gemma put attention_bias on all four attention projections; Qwen2 has q/k/v biases always.
  const llamaBias = arch === 'llama' || arch === 'qwen3' || gemma ? bool('attention_bias', false) : false;

  let slidingWindow: number | null = null;
  let layerWindows = new Array<number>(numLayers).fill(0);
  // `layer_types` (Qwen2/3, Gemma 2/3): each layer's window from its type; undefined when absent.
  const layerTypeWindows = (window: number): number[] | undefined => {
    const types = field('layer_types');
    if (types === undefined || types === null) return undefined;
    if (!Array.isArray(types) || types.length !== numLayers || !types.every((t) => t === 'full_attention' || t === 'sliding_attention')) {
      throw err(`"layer_types" must list "full_attention" or "sliding_attention" for each of the ${numLayers} layers, got ${JSON.stringify(types)}.`,
        'The config is damaged.', { field: 'layer_types' });
    }
    return types.map((t) => (t === 'sliding_attention' ? window : 0));
  };
  if (arch === 'mistral' || arch === 'phi3') {
    // Phi3Model masks every layer with sliding_window when the config sets one (Phi-3-mini-4k: 2047).
    const sw = field('sliding_window');
    slidingWindow = sw === undefined ? d.slidingWindow : sw === null ? null : posInt('sliding_window');
    layerWindows.fill(slidingWindow ?? 0);
  } else if ((arch === 'qwen2' || arch === 'qwen3') && bool('use_sliding_window', false)) {
    // Qwen2Config / Qwen3Config: sliding_window (default 4096) only counts with use_sliding_window.
    slidingWindow = field('sliding_window') === null ? null : posInt('sliding_window', 4096);
    if (slidingWindow !== null) {
      const from = field('max_window_layers') === undefined || field('max_window_layers') === null ? 28 : posIntOrZero('max_window_layers');
      layerWindows = layerTypeWindows(slidingWindow) ?? layerWindows.map((_, i) => (i >= from ? slidingWindow! : 0));
    }
  } else if (arch === 'gemma2' || arch === 'gemma3_text') {
    // Gemma2Config: every other layer slides (0, 2, ...); Gemma3TextConfig: all but every
    // sliding_window_pattern-th (default 6); layer_types overrides both.
    slidingWindow = posInt('sliding_window', d.slidingWindow!);
    const pattern = arch === 'gemma2' ? 2 : posInt('sliding_window_pattern', 6);
    layerWindows = layerTypeWindows(slidingWindow) ?? layerWindows.map((_, i) => ((i + 1) % pattern !== 0 ? slidingWindow! : 0));
  }
  // Softcaps: null (or absent where the class default is None) = none.
  const softcap = (name: string, fallback: number): number => {
    const v = field(name);
    if (v === undefined) return fallback;
    if (v === null) return 0;
    return posNum(name, 0);
  };

  const maxPositionEmbeddings = posInt('max_position_embeddings', d.maxPositionEmbeddings);
  // Gemma 3 as transformers v5 saves it: rope_parameters per layer type ({full_attention: {...},
  // sliding_attention: {...}}); v4 files have rope_theta, rope_scaling and rope_local_base_freq.
  // Gemma3TextConfig's bases default to 1e6 (global) and 1e4 (local).
  const perType = arch === 'gemma3_text' ? ropePerLayerType(cfg, file) : null;
  // Phi3Config always carries original_max_position_embeddings (default 4096), which LongRoPE reads.
  const ropeCfg = arch === 'phi3' ? (Object.hasOwn(cfg, 'original_max_position_embeddings') ? cfg : { ...cfg, original_max_position_embeddings: 4096 })
    : arch !== 'gemma3_text' ? cfg
    : perType ? { ...cfg, rope_parameters: perType.full, rope_theta: perType.full.rope_theta ?? cfg.rope_theta ?? 1e6 }
    : { ...cfg, rope_theta: cfg.rope_theta ?? 1e6 };
  const { theta, rope } = parseRope(ropeCfg, maxPositionEmbeddings, file);
  const torchDtype = typeof cfg.torch_dtype === 'string' ? cfg.torch_dtype : typeof cfg.dtype === 'string' ? cfg.dtype : null;
  const later = arch === 'gemma2' || arch === 'gemma3_text';
  // Gemma2Model multiplies by torch.tensor(sqrt(hidden_size), dtype=hidden_states.dtype) and Gemma 3's
  // embed_scale is cast to the weights' dtype: the normalizer is rounded to the checkpoint's dtype
  // (33.94 -> 34.0 in bfloat16 for hidden_size 1152).
  const embedScale = gemma ? roundToDtype(Math.sqrt(hiddenSize), torchDtype) : 1;
  // As the modeling files write it (x ** -0.5); the other families keep the kernels' 1 / sqrt(D).
  const attnScale = later ? posNum('query_pre_attn_scalar', 256) ** -0.5 : gemma ? headDim ** -0.5 : 1 / Math.sqrt(headDim);

  return {
    arch,
    vocabSize,
    hiddenSize,
    intermediateSize,
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: posNum('rms_norm_eps', d.rmsNormEps),
    ropeTheta: theta,
    rope,
    // PretrainedConfig ties by default; LlamaConfig, MistralConfig, Qwen2/3Config pass False, the Gemma configs True.
    tieWordEmbeddings: bool('tie_word_embeddings', gemma),
    attentionBias: arch === 'qwen2' || llamaBias,
    oProjBias: llamaBias,
    qkNorm: arch === 'qwen3' || arch === 'gemma3_text',
    fusedProjections: arch === 'phi3',
    maxPositionEmbeddings,
    slidingWindow,
    layerWindows,
    bosTokenId: tokenIds(cfg, 'bos_token_id', d.bos === null ? [] : [d.bos], file)[0] ?? null,
    eosTokenIds: tokenIds(cfg, 'eos_token_id', d.eos, file),
    torchDtype,
    hiddenAct: gemma ? 'gelu_tanh' : 'silu',
    normOffset: gemma,
    embedScale,
    attnScale,
    attnSoftcap: arch === 'gemma2' ? softcap('attn_logit_softcapping', 50) : arch === 'gemma3_text' ? softcap('attn_logit_softcapping', 0) : 0,
    finalSoftcap: arch === 'gemma2' ? softcap('final_logit_softcapping', 30) : arch === 'gemma3_text' ? softcap('final_logit_softcapping', 0) : 0,
    sandwichNorms: later,
    ropeLocalTheta: arch !== 'gemma3_text' ? null
      : perType?.sliding?.rope_theta !== undefined ? posNum('rope_theta', 10000, perType.sliding, 'rope_parameters.sliding_attention.')
      : posNum('rope_local_base_freq', 10000),
  };
}

/** Mixture-of-experts families (their model_type alone says so: the expert count has a default). */
const MOE_TYPES = new Set(['qwen2_moe', 'qwen3_moe', 'mixtral', 'phimoe']);
/** Fields that hold an expert count in transformers' MoE configs. */
const EXPERT_FIELDS = ['num_experts', 'num_local_experts', 'n_routed_experts'];

/** Class names of the refused families, for a config without model_type. */
const REFUSED_CLASSES: Readonly<Record<string, string>> = {
  Gemma3ForConditionalGeneration: 'gemma3',
  Phi3ForCausalLM: 'phi3', Phi3SmallForCausalLM: 'phi3small', Qwen3MoeForCausalLM: 'qwen3_moe', Qwen2MoeForCausalLM: 'qwen2_moe',
  MixtralForCausalLM: 'mixtral', PhiMoEForCausalLM: 'phimoe',
};

function detectArch(cfg: Record<string, unknown>, file: string): Arch {
  const supported = Object.entries(SUPPORTED_ARCHITECTURES).map(([a, c]) => `${a} (${c})`).join(', ');
  const refuse = (message: string, hint: string, field: string, modelType: unknown) =>
    new ModelFileError(`${file}: ${message} Supported: ${supported}.`, hint,
      { file, field, modelType: modelType ?? null, supported: Object.keys(SUPPORTED_ARCHITECTURES) });
  const archs = Array.isArray(cfg.architectures) ? cfg.architectures : [];
  let mt = cfg.model_type;
  if (mt === undefined) {
    for (const a of archs) if (typeof a === 'string' && Object.hasOwn(REFUSED_CLASSES, a)) mt = REFUSED_CLASSES[a];
  }
  const dense = 'Choose a dense Llama, Mistral, Qwen2, Qwen3, Phi-3 or Gemma model (for example Qwen3-0.6B, Qwen2.5-0.5B, Llama 3.2 1B, Phi-3.5-mini, gemma-3-270m).';
  // Experts first: a MoE config must not load as the dense family its attention resembles.
  for (const f of EXPERT_FIELDS) {
    const v = cfg[f];
    if (typeof v === 'number' && v > 0) {
      throw refuse(`"${f}": ${v} makes this a mixture-of-experts model${typeof mt === 'string' ? ` (model_type "${mt}")` : ''}; expert routing is not supported, only dense decoders.`, dense, f, mt);
    }
  }
  if (typeof mt === 'string' && MOE_TYPES.has(mt)) {
    throw refuse(`model_type "${mt}" is a mixture-of-experts model; expert routing is not supported, only dense decoders.`, dense, 'model_type', mt);
  }
  if (mt === 'gemma3' || cfg.vision_config !== undefined) {
    throw refuse(`${mt === 'gemma3' ? 'Gemma 3 with a vision tower' : `model_type "${String(mt)}" with a vision tower`} ("vision_config") is not supported: this engine trains text decoders only. The text-only Gemma 3 (model_type "gemma3_text", Gemma3ForCausalLM: gemma-3-270m, gemma-3-1b) is.`,
      dense, 'vision_config', mt);
  }
  const sparse = Object.keys(cfg).find((k) => k.startsWith('blocksparse_'));
  if (mt === 'phi3small' || sparse) {
    throw refuse(`Phi-3-small's block-sparse attention (${sparse ? `"${sparse}"` : 'model_type "phi3small"'}) is not supported; attention here is dense causal attention (Phi-3-mini and Phi-3.5-mini, model_type "phi3", load).`,
      dense, sparse ?? 'model_type', mt);
  }
  // hasOwn, not `in`: "constructor", "toString" and "__proto__" are `in` every object.
  if (typeof mt === 'string' && Object.hasOwn(SUPPORTED_ARCHITECTURES, mt)) return mt as Arch;
  if (mt === undefined) {
    for (const a of archs) if (typeof a === 'string' && CLASS_TO_ARCH.has(a)) return CLASS_TO_ARCH.get(a)!;
  }
  const what = typeof mt === 'string' ? `model_type "${mt}"` : archs.length ? `architectures ${JSON.stringify(archs)}` : 'no model_type';
  throw refuse(`unsupported architecture (${what}).`, dense, 'model_type', mt);
}

/** rope_parameters keyed by layer type (transformers v5's Gemma 3), or null for the flat forms. The
 *  sliding layers' RoPE must be the default type: Gemma3TextModel builds it so. */
function ropePerLayerType(cfg: Record<string, unknown>, file: string): { full: Record<string, unknown>; sliding: Record<string, unknown> | null } | null {
  const rp = cfg.rope_parameters;
  if (typeof rp !== 'object' || rp === null || Array.isArray(rp)) return null;
  const byType = rp as Record<string, unknown>;
  if (!('full_attention' in byType) && !('sliding_attention' in byType)) return null;
  const obj = (k: string): Record<string, unknown> | null => {
    const v = byType[k];
    if (v === undefined || v === null) return null;
    if (typeof v !== 'object' || Array.isArray(v)) {
      throw new ModelFileError(`${file}: "rope_parameters.${k}" must be an object.`, 'The config is damaged.', { file, field: `rope_parameters.${k}` });
    }
    return v as Record<string, unknown>;
  };
  const sliding = obj('sliding_attention');
  const type = sliding?.rope_type ?? sliding?.type ?? 'default';
  if (type !== 'default') {
    throw new ModelFileError(`${file}: rope type "${String(type)}" for the sliding layers is not supported (Gemma 3 uses "default" there).`,
      'The config is unusual for Gemma 3.', { file, field: 'rope_parameters.sliding_attention.rope_type' });
  }
  return { full: obj('full_attention') ?? { rope_type: 'default' }, sliding };
}

function tokenIds(cfg: Record<string, unknown>, name: string, fallback: number[], file: string): number[] {
  const v = cfg[name];
  if (v === undefined) return fallback;
  if (v === null) return [];
  const list = Array.isArray(v) ? v : [v];
  if (!list.every((x) => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0)) {
    throw new ModelFileError(`${file}: "${name}" must be a token id or a list of them, got ${JSON.stringify(v)}.`, 'The config is damaged.', { file, field: name });
  }
  return list as number[];
}
