// Hugging Face config.json -> one typed ModelConfig for the Llama family we support (llama: Llama
// 2/3/3.1/3.2, SmolLM2, TinyLlama; mistral; qwen2). Defaults are the transformers config classes'
// own (configuration_{llama,mistral,qwen2}.py; docs/formats.md#hugging-face-model-configs), so a
// config that omits a field means what it means in Python. The shape fields have no default here
// on purpose: LlamaConfig would silently fill in a 7B shape. RoPE fields are parsed by rope.ts.

import { ModelFileError } from '../errors.ts';
import { parseRope, type RopeConfig } from './rope.ts';

export type Arch = 'llama' | 'mistral' | 'qwen2';

/** model_type -> the transformers class names that carry it. */
export const SUPPORTED_ARCHITECTURES: Readonly<Record<Arch, string>> = {
  llama: 'LlamaForCausalLM',
  mistral: 'MistralForCausalLM',
  qwen2: 'Qwen2ForCausalLM',
};

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
  /** q/k/v projections have a bias (always for qwen2; llama `attention_bias`). */
  attentionBias: boolean;
  /** o_proj has a bias (llama `attention_bias` only; never for qwen2). */
  oProjBias: boolean;
  maxPositionEmbeddings: number;
  /** Mistral's sliding attention window in tokens; null = full causal attention. */
  slidingWindow: number | null;
  bosTokenId: number | null;
  /** eos_token_id may be a list (Llama 3.1: end_of_text, eom, eot). */
  eosTokenIds: number[];
  /** `torch_dtype` (or v5 `dtype`) as written, e.g. "bfloat16"; informational. */
  torchDtype: string | null;
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
};

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
  if (field('head_dim') === undefined || field('head_dim') === null) {
    if (hiddenSize % numHeads !== 0) {
      throw err(`hidden_size ${hiddenSize} is not divisible by num_attention_heads ${numHeads}, and head_dim is not given.`,
        'The config is inconsistent.', { field: 'head_dim' });
    }
  }
  const headDim = posInt('head_dim', hiddenSize / numHeads);
  if (numHeads % numKvHeads !== 0) {
    throw err(`num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}.`,
      'Grouped-query attention needs whole groups; the config is inconsistent.', { field: 'num_key_value_heads' });
  }

  const act = field('hidden_act') ?? 'silu';
  if (act !== 'silu') {
    throw err(`hidden_act "${String(act)}" is not supported (only "silu").`, 'Llama, Mistral and Qwen2 models use SiLU; this config is unusual.', { field: 'hidden_act' });
  }
  if (bool('mlp_bias', false)) {
    throw err('mlp_bias: true is not supported yet.', 'Use a model without MLP biases (standard Llama checkpoints have none).', { field: 'mlp_bias' });
  }
  const llamaBias = arch === 'llama' ? bool('attention_bias', false) : false;

  let slidingWindow: number | null = null;
  if (arch === 'mistral') {
    const sw = field('sliding_window');
    slidingWindow = sw === undefined ? d.slidingWindow : sw === null ? null : posInt('sliding_window');
  } else if (arch === 'qwen2' && bool('use_sliding_window', false)) {
    throw err('use_sliding_window: true is not supported for qwen2 yet.', 'Qwen2/2.5 checkpoints ship with use_sliding_window false; set it back to false.', { field: 'use_sliding_window' });
  }

  const maxPositionEmbeddings = posInt('max_position_embeddings', d.maxPositionEmbeddings);
  const { theta, rope } = parseRope(cfg, maxPositionEmbeddings, file);

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
    tieWordEmbeddings: bool('tie_word_embeddings', false),
    attentionBias: arch === 'qwen2' || llamaBias,
    oProjBias: llamaBias,
    maxPositionEmbeddings,
    slidingWindow,
    bosTokenId: tokenIds(cfg, 'bos_token_id', d.bos === null ? [] : [d.bos], file)[0] ?? null,
    eosTokenIds: tokenIds(cfg, 'eos_token_id', d.eos, file),
    torchDtype: typeof cfg.torch_dtype === 'string' ? cfg.torch_dtype : typeof cfg.dtype === 'string' ? cfg.dtype : null,
  };
}

function detectArch(cfg: Record<string, unknown>, file: string): Arch {
  const supported = Object.entries(SUPPORTED_ARCHITECTURES).map(([a, c]) => `${a} (${c})`).join(', ');
  const mt = cfg.model_type;
  // hasOwn, not `in`: "constructor", "toString" and "__proto__" are `in` every object.
  if (typeof mt === 'string' && Object.hasOwn(SUPPORTED_ARCHITECTURES, mt)) return mt as Arch;
  const archs = Array.isArray(cfg.architectures) ? cfg.architectures : [];
  if (mt === undefined) {
    for (const a of archs) if (typeof a === 'string' && CLASS_TO_ARCH.has(a)) return CLASS_TO_ARCH.get(a)!;
  }
  const what = typeof mt === 'string' ? `model_type "${mt}"` : archs.length ? `architectures ${JSON.stringify(archs)}` : 'no model_type';
  throw new ModelFileError(`${file}: unsupported architecture (${what}). Supported: ${supported}.`,
    'Choose a Llama, Mistral or Qwen2 family model (for example SmolLM2, TinyLlama, Llama 3.2, Qwen2.5).',
    { file, field: 'model_type', modelType: mt ?? null, supported: Object.keys(SUPPORTED_ARCHITECTURES) });
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
