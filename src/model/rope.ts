// Rotary position embedding as transformers defines it: the one parser of a config.json's RoPE
// fields and the one computation of inv_freq. The kernels (src/kernels/rope_forward.ts) only apply
// cos/sin tables built from the numbers computed here. See docs/kernels.md#rope for the layout.
//
// RoPE comes in two layouts: the older top-level `rope_theta` + `rope_scaling`, and transformers
// v5's `rope_parameters` (which may carry `rope_theta` inside; vllm-project/vllm PR #28542 adapts to
// the same rename). The rule, after transformers' modeling_rope_utils.py (`rope_config_validation`
// accepts the older key "type" beside "rope_type"; docs/formats.md#rope-fields):
//   theta = rope_theta ?? rope_parameters.rope_theta ?? 10000;  scaling = rope_scaling ?? rope_parameters;
//   type = scaling.rope_type ?? scaling.type ?? 'default'.

import { ModelFileError } from '../errors.ts';
import { ropeTables } from '../kernels/rope_forward.ts';

export type RopeType = 'default' | 'linear' | 'llama3' | 'longrope';
export const SUPPORTED_ROPE_TYPES: readonly RopeType[] = ['default', 'linear', 'llama3', 'longrope'];

/** A model's RoPE scaling. Fields a type does not use hold neutral values. */
export interface RopeConfig {
  type: RopeType;
  /** 1 for 'default'. */
  factor: number;
  /** llama3 only (1 otherwise). */
  lowFreqFactor: number;
  /** llama3 only (1 otherwise). */
  highFreqFactor: number;
  /** llama3 and longrope (maxPositionEmbeddings otherwise). */
  originalMaxPositionEmbeddings: number;
  /** longrope only (Phi-3/3.5): per-frequency divisors (D/2 each) used while a sequence stays within
   *  originalMaxPositionEmbeddings (short) and beyond it (long), and the factor cos and sin are
   *  multiplied by, whichever set is in use. */
  shortFactor?: readonly number[];
  longFactor?: readonly number[];
  attentionFactor?: number;
}

/** What inv_freq depends on: the head dim D, the base and the scaling (a subset of ModelConfig). */
export interface RopeDims {
  headDim: number;
  ropeTheta: number;
  rope: RopeConfig;
}

/** The neutral ('default') RopeConfig. */
export function defaultRope(maxPositionEmbeddings: number): RopeConfig {
  return { type: 'default', factor: 1, lowFreqFactor: 1, highFreqFactor: 1, originalMaxPositionEmbeddings: maxPositionEmbeddings };
}

/**
 * theta and the RopeConfig of an HF config object. Throws ModelFileError naming the field for a
 * rope type we do not implement, a malformed field, or a partial rotary dim (the kernels rotate
 * the whole head).
 */
export function parseRope(cfg: Record<string, unknown>, maxPos: number, file = 'config.json'): { theta: number; rope: RopeConfig } {
  const err = (message: string, field: string, hint = 'The config is damaged.') =>
    new ModelFileError(`${file}: ${message}`, hint, { file, field });
  const partial = cfg.partial_rotary_factor;
  if (partial !== undefined && partial !== null && partial !== 1) {
    throw err(`partial_rotary_factor ${JSON.stringify(partial)} is not supported.`, 'partial_rotary_factor',
      'Only models that rotate the full head dim are supported (Llama, Mistral, Qwen2).');
  }
  const params = cfg.rope_parameters;
  const paramsObj = typeof params === 'object' && params !== null && !Array.isArray(params) ? (params as Record<string, unknown>) : null;
  if (params !== undefined && params !== null && !paramsObj) throw err('"rope_parameters" must be an object.', 'rope_parameters');

  const thetaRaw = cfg.rope_theta ?? paramsObj?.rope_theta ?? 10000;
  // Finite too: JSON.parse reads 1e999 as Infinity, and an infinite theta makes every frequency 0.
  if (typeof thetaRaw !== 'number' || !Number.isFinite(thetaRaw) || !(thetaRaw > 0)) throw err(`rope_theta must be a positive number, got ${JSON.stringify(thetaRaw)}.`, 'rope_theta');

  const scalingRaw = cfg.rope_scaling ?? params ?? null;
  const where = cfg.rope_scaling !== undefined && cfg.rope_scaling !== null ? 'rope_scaling' : 'rope_parameters';
  const neutral = defaultRope(maxPos);
  if (scalingRaw === null) return { theta: thetaRaw, rope: neutral };
  if (typeof scalingRaw !== 'object' || Array.isArray(scalingRaw)) throw err(`"${where}" must be an object.`, where);
  const s = scalingRaw as Record<string, unknown>;
  // Phi3Config renames the older "su" (and "yarn") to "longrope"; a Phi-3 "yarn" was never published.
  const rawType = s.rope_type ?? s.type ?? 'default';
  const type = rawType === 'su' ? 'longrope' : rawType;
  const num = (k: string): number => {
    const v = s[k];
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      throw err(`${where}.${k} must be a positive number for rope type "${String(type)}", got ${JSON.stringify(v)}.`, `${where}.${k}`);
    }
    return v;
  };
  switch (type) {
    case 'default':
      return { theta: thetaRaw, rope: neutral };
    case 'linear':
      return { theta: thetaRaw, rope: { ...neutral, type: 'linear', factor: num('factor') } };
    case 'llama3': {
      const rope: RopeConfig = {
        type: 'llama3',
        factor: num('factor'),
        lowFreqFactor: num('low_freq_factor'),
        highFreqFactor: num('high_freq_factor'),
        originalMaxPositionEmbeddings: num('original_max_position_embeddings'),
      };
      if (rope.highFreqFactor === rope.lowFreqFactor) {
        throw err(`${where}: high_freq_factor must differ from low_freq_factor (HF divides by their difference).`, `${where}.high_freq_factor`);
      }
      return { theta: thetaRaw, rope };
    }
    case 'longrope':
      return { theta: thetaRaw, rope: parseLongrope(s, cfg, maxPos, where, err) };
    default:
      throw err(`rope type "${String(type)}" (${where}) is not supported. Supported: ${SUPPORTED_ROPE_TYPES.join(', ')}.`, `${where}.rope_type`,
        'Dynamic-NTK and YaRN scaling are not implemented; choose a model with default, linear, llama3 or longrope RoPE.');
  }
}

/**
 * LongRoPE (Phi-3-128k, Phi-3.5) as modeling_rope_utils._compute_longrope_parameters reads it:
 * original_max_position_embeddings is the top-level config field (Phi3Config); when present the
 * scale is max_position_embeddings / original, else `factor`; attention_factor defaults to
 * sqrt(1 + ln(scale) / ln(original)), 1 when the scale is at most 1.
 */
function parseLongrope(s: Record<string, unknown>, cfg: Record<string, unknown>, maxPos: number, where: string,
  err: (message: string, field: string, hint?: string) => ModelFileError): RopeConfig {
  const heads = cfg.num_attention_heads, hidden = cfg.hidden_size;
  const headDim = typeof cfg.head_dim === 'number' ? cfg.head_dim
    : typeof hidden === 'number' && typeof heads === 'number' && heads > 0 ? Math.floor(hidden / heads) : NaN;
  const list = (k: string): number[] => {
    const v = s[k];
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'number' && Number.isFinite(x) && x > 0)) {
      throw err(`${where}.${k} must be a list of positive numbers for rope type "longrope", got ${JSON.stringify(v)?.slice(0, 80)}.`, `${where}.${k}`);
    }
    if (Number.isInteger(headDim) && v.length !== headDim / 2) {
      throw err(`${where}.${k} has ${v.length} entries; the head dim ${headDim} needs ${headDim / 2}.`, `${where}.${k}`);
    }
    return v as number[];
  };
  const shortFactor = list('short_factor'), longFactor = list('long_factor');
  const origRaw = cfg.original_max_position_embeddings;
  let orig = maxPos, scale: number;
  if (origRaw !== undefined && origRaw !== null) {
    if (typeof origRaw !== 'number' || !Number.isSafeInteger(origRaw) || origRaw <= 0) {
      throw err(`original_max_position_embeddings must be a positive integer, got ${JSON.stringify(origRaw)}.`, 'original_max_position_embeddings');
    }
    orig = origRaw;
    scale = maxPos / orig;
  } else {
    const fct = s.factor;
    if (typeof fct !== 'number' || !Number.isFinite(fct) || fct <= 0) {
      throw err(`${where}.factor must be a positive number when original_max_position_embeddings is absent, got ${JSON.stringify(fct)}.`, `${where}.factor`);
    }
    scale = fct;
  }
  const af = s.attention_factor;
  if (af !== undefined && af !== null && (typeof af !== 'number' || !Number.isFinite(af) || af <= 0)) {
    throw err(`${where}.attention_factor must be a positive number, got ${JSON.stringify(af)}.`, `${where}.attention_factor`);
  }
  const attentionFactor = typeof af === 'number' ? af : scale <= 1 ? 1 : Math.sqrt(1 + Math.log(scale) / Math.log(orig));
  return { type: 'longrope', factor: scale, lowFreqFactor: 1, highFreqFactor: 1, originalMaxPositionEmbeddings: orig, shortFactor, longFactor, attentionFactor };
}

const f = Math.fround;

/**
 * inv_freq (D/2) as transformers' modeling_rope_utils.py computes it, in f32 op by op, plus the
 * attention_scaling its rope type implies (1.0 for default, linear and llama3):
 *   default: 1 / base ** (arange(0, dim, 2).float() / dim)      (_compute_default_rope_parameters)
 *   linear:  default / factor                                   (_compute_linear_scaling_rope_parameters)
 *   llama3:  low frequencies / factor, high ones kept, the band between smoothly interpolated
 *            (_compute_llama3_parameters).
 * Each step rounds to f32 like the torch op it mirrors: `s / t` on a tensor is torch's
 * t.reciprocal() * s (Tensor.__rtruediv__), and Python scalars are cast to f32 first.
 */
export function ropeInvFreq(cfg: RopeDims, long = false): { invFreq: Float32Array; attentionScaling: number } {
  const dim = cfg.headDim, theta = cfg.ropeTheta, s = cfg.rope;
  if (!Number.isInteger(dim) || dim <= 0 || dim % 2 !== 0) throw new RangeError(`rope: dim must be a positive even integer, got ${dim}`);
  const half = dim / 2;
  const inv = new Float32Array(half);
  // f64 pow rounded once to f32 agrees with torch's f32 pow at every head dim we checked (8..128).
  for (let j = 0; j < half; j++) inv[j] = f(1 / f(Math.pow(f(theta), f((2 * j) / dim))));
  switch (s.type) {
    case 'default':
      break;
    case 'linear':
      for (let j = 0; j < half; j++) inv[j] = f(inv[j] / f(s.factor));
      break;
    case 'llama3': {
      const factor = f(s.factor), lff = f(s.lowFreqFactor);
      const old = f(s.originalMaxPositionEmbeddings);
      const lowWavelen = f(s.originalMaxPositionEmbeddings / s.lowFreqFactor);
      const highWavelen = f(s.originalMaxPositionEmbeddings / s.highFreqFactor);
      const twoPi = f(2 * Math.PI);
      const bandWidth = f(s.highFreqFactor - s.lowFreqFactor); // a Python float in HF, cast once
      for (let j = 0; j < half; j++) {
        const wavelen = f(f(1 / inv[j]) * twoPi);
        const invL = wavelen > lowWavelen ? f(inv[j] / factor) : inv[j];
        const smooth = f(f(f(f(1 / wavelen) * old) - lff) / bandWidth);
        const smoothed = f(f(f(f(1 - smooth) * invL) / factor) + f(smooth * invL));
        const medium = !(wavelen < highWavelen) && !(wavelen > lowWavelen);
        inv[j] = medium ? smoothed : invL;
      }
      break;
    }
    case 'longrope': {
      // _compute_longrope_parameters: 1 / (ext_factors * base ** (arange(0, dim, 2) / dim)).
      const ext = long ? s.longFactor : s.shortFactor;
      if (!ext || ext.length !== half) throw new RangeError(`rope: longrope needs ${half} factors, got ${ext?.length}`);
      for (let j = 0; j < half; j++) inv[j] = f(1 / f(f(ext[j]) * f(Math.pow(f(theta), f((2 * j) / dim)))));
      return { invFreq: inv, attentionScaling: s.attentionFactor ?? 1 };
    }
    default:
      // Only reachable by building a RopeConfig by hand: parseRope admits the types above.
      throw new ModelFileError(`RoPE type "${(s as { type: string }).type}" is not supported.`,
        `Supported RoPE: rope_type ${SUPPORTED_ROPE_TYPES.join(', ')}.`, { field: 'rope_scaling' });
  }
  return { invFreq: inv, attentionScaling: 1 };
}

/** LongRoPE's choice for a forward whose positions reach maxPositions - 1: transformers
 *  (dynamic_rope_update, longrope_frequency_update) takes the long factors when max(position_ids)+1
 *  exceeds original_max_position_embeddings, for every position of that forward. */
export function longropeIsLong(rope: RopeConfig, maxPositions: number): boolean {
  return rope.type === 'longrope' && maxPositions > rope.originalMaxPositionEmbeddings;
}

/** The model's cos/sin tables (P, D/2) for positions 0..maxPositions-1, as the rope kernels read them.
 *  LongRoPE: a training or evaluation run takes one factor set, chosen by its longest position
 *  (longropeIsLong), as transformers does for a forward of that length; generation with a KV cache
 *  that may cross the original context also gets the long set (plan row 'rope.cos.long'), and
 *  switches when it crosses (generate.ts, as Phi3ForCausalLM.prepare_inputs_for_generation does). */
export function ropeTablesFor(cfg: RopeDims, maxPositions: number, long = longropeIsLong(cfg.rope, maxPositions)): { cos: Float32Array; sin: Float32Array } {
  const { invFreq, attentionScaling } = ropeInvFreq(cfg, long);
  return ropeTables(invFreq, maxPositions, attentionScaling);
}

/** Generation (KV cache) past the original context of a LongRoPE model needs both factor sets. */
export function needsLongTables(cfg: { rope?: RopeConfig }, kvCache: boolean, maxPositions: number): boolean {
  return kvCache && cfg.rope !== undefined && longropeIsLong(cfg.rope, maxPositions);
}
