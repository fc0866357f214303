import shader from '../../shaders/rope_forward.wgsl?raw';
import { ModelFileError } from '../errors.ts';
import { grid, params, type Binding, type Gpu } from '../gpu/runtime.ts';

const WG = 256;

/** HF rope_scaling (rope_parameters in Transformers v5), camelCased. Absent = 'default'. */
export type RopeScaling =
  | { ropeType: 'default' }
  | { ropeType: 'linear'; factor: number }
  | {
      ropeType: 'llama3';
      factor: number;
      lowFreqFactor: number;
      highFreqFactor: number;
      originalMaxPositionEmbeddings: number;
    };

export interface RopeConfig {
  /** Rotary dim = head_dim (partial_rotary_factor < 1, Phi-3, is not supported by the kernels). */
  dim: number;
  /** rope_theta (the base). */
  theta: number;
  scaling?: RopeScaling;
}

/** The rope fields of an HF config.json, v4 (rope_theta + rope_scaling) or v5 (rope_parameters). */
export interface HfRopeFields {
  head_dim?: number | null;
  hidden_size?: number;
  num_attention_heads?: number;
  partial_rotary_factor?: number;
  rope_theta?: number;
  rope_scaling?: Record<string, unknown> | null;
  rope_parameters?: Record<string, unknown> | null;
}

function unsupported(what: string, field = 'rope_scaling'): ModelFileError {
  return new ModelFileError(
    `${what} is not supported.`,
    'Supported RoPE: rope_type default, linear or llama3, with the full head dim rotated.',
    { field },
  );
}

/**
 * RopeConfig from HF config fields, by the parser rule of SPEC.md §4.1: theta = rope_theta ??
 * rope_parameters.rope_theta ?? 10000; scaling = rope_scaling ?? rope_parameters; type = rope_type ??
 * type ("type" is the older key); dim = head_dim ?? hidden_size / num_attention_heads.
 */
export function ropeConfigFromHf(cfg: HfRopeFields): RopeConfig {
  const dim = cfg.head_dim ?? Math.floor((cfg.hidden_size ?? NaN) / (cfg.num_attention_heads ?? NaN));
  if ((cfg.partial_rotary_factor ?? 1) !== 1) throw unsupported(`partial_rotary_factor ${cfg.partial_rotary_factor}`, 'partial_rotary_factor');
  const theta = cfg.rope_theta ?? (cfg.rope_parameters?.rope_theta as number | undefined) ?? 10000;
  const s = cfg.rope_scaling ?? cfg.rope_parameters ?? {};
  const type = (s.rope_type ?? s.type ?? 'default') as string;
  const num = (k: string) => {
    const v = s[k];
    if (typeof v !== 'number') throw unsupported(`rope ${type} without a numeric ${k}`);
    return v;
  };
  switch (type) {
    case 'default':
      return { dim, theta };
    case 'linear':
      return { dim, theta, scaling: { ropeType: 'linear', factor: num('factor') } };
    case 'llama3':
      return {
        dim, theta,
        scaling: {
          ropeType: 'llama3', factor: num('factor'), lowFreqFactor: num('low_freq_factor'),
          highFreqFactor: num('high_freq_factor'), originalMaxPositionEmbeddings: num('original_max_position_embeddings'),
        },
      };
    default:
      throw unsupported(`RoPE type "${type}"`);
  }
}

const f = Math.fround;

/**
 * inv_freq (D/2) as transformers' modeling_rope_utils computes it, in f32 op by op, plus the
 * attention_scaling its rope type implies (1.0 for default, linear and llama3):
 *   default: 1 / base ** (arange(0, dim, 2).float() / dim)
 *   linear:  default / factor
 *   llama3:  _compute_llama3_parameters (SPEC.md §4.4): low frequencies / factor, high ones kept,
 *            the band between smoothly interpolated.
 * Each step rounds to f32 like the torch op it mirrors: `s / t` on a tensor is torch's
 * t.reciprocal() * s (Tensor.__rtruediv__), and Python scalars are cast to f32 first.
 */
export function ropeInvFreq(config: RopeConfig): { invFreq: Float32Array; attentionScaling: number } {
  const { dim, theta } = config;
  if (!Number.isInteger(dim) || dim <= 0 || dim % 2 !== 0) throw new RangeError(`rope: dim must be a positive even integer, got ${dim}`);
  const half = dim / 2;
  const inv = new Float32Array(half);
  // f64 pow rounded once to f32 agrees with torch's f32 pow at every head dim we checked (8..128).
  for (let j = 0; j < half; j++) inv[j] = f(1 / f(Math.pow(f(theta), f((2 * j) / dim))));
  const s = config.scaling ?? { ropeType: 'default' };
  switch (s.ropeType) {
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
    default:
      throw unsupported(`RoPE type "${(s as { ropeType: string }).ropeType}"`);
  }
  return { invFreq: inv, attentionScaling: 1 };
}

/**
 * cos/sin tables (P, D/2) for positions 0..P-1: angle = fround(pos * inv_freq) as HF's f32 matmul
 * makes it, then cos/sin in f64 rounded to f32 (torch's f32 cos is within ~1 ulp of that), times
 * attention_scaling in f32. The second half of HF's (P, D) table repeats the first, so it is not stored.
 */
export function ropeTables(invFreq: Float32Array, maxPositions: number, attentionScaling = 1): { cos: Float32Array; sin: Float32Array } {
  const half = invFreq.length;
  const cos = new Float32Array(maxPositions * half), sin = new Float32Array(maxPositions * half);
  const a = f(attentionScaling);
  for (let pos = 0; pos < maxPositions; pos++) {
    for (let j = 0; j < half; j++) {
      const angle = f(pos * invFreq[j]);
      cos[pos * half + j] = f(f(Math.cos(angle)) * a);
      sin[pos * half + j] = f(f(Math.sin(angle)) * a);
    }
  }
  return { cos, sin };
}

/**
 * x = rope(x) in place. x: (B, T, Hn, D); positions: (B*T) u32; cos, sin: (P, D/2) from ropeTables,
 * P read from the table's size. Positions >= P leave their pairs unchanged.
 */
export function ropeForward(
  gpu: Gpu, x: Binding, positions: Binding, cos: Binding, sin: Binding, B: number, T: number, Hn: number, D: number,
): void {
  if (D % 2 !== 0) throw new RangeError(`rope_forward: D must be even, got ${D}`);
  const P = Math.floor(cos.size / (4 * (D / 2)));
  const k = gpu.kernel('rope_forward', shader, { overrides: { WG } });
  gpu.dispatch(k, [x, positions, cos, sin], params([B, T, Hn, D, P]), grid(Math.ceil((B * T * Hn * D) / 2 / WG)));
}
