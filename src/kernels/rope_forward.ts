import shader from '../../shaders/rope_forward.wgsl?raw';
import { grid, params, type Binding, type Gpu, type Tensor } from '../gpu/runtime.ts';

// The tables come from src/model/rope.ts (transformers' inv_freq for the model's rope type); this
// host only lays them out and applies them.

const WG = 256;
const f = Math.fround;

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

/**
 * Decoding's rope and K/V append, one dispatch: q (T, H, D) rotated in place; rope(k) written into
 * the K cache and v copied into the V cache, token t's rows at row positions[t] (B = 1; a row past
 * the cache is not written); k itself is left as it was. k, v: (T, Hkv, D); kc, vc: (rows, Hkv, D),
 * bound whole. The rows come from the positions buffer, not the uniform, so a token's dispatch
 * reuses the last one's bind group.
 */
export function ropeAppendKv(
  gpu: Gpu, q: Binding, k: Binding, v: Binding, positions: Binding, cos: Binding, sin: Binding, kc: Tensor, vc: Tensor,
  T: number, H: number, Hkv: number, D: number,
): void {
  if (D % 2 !== 0) throw new RangeError(`rope_forward: D must be even, got ${D}`);
  if (H < Hkv) throw new RangeError(`rope_forward: ${H} query heads, fewer than the ${Hkv} key/value heads`);
  const P = Math.floor(cos.size / (4 * (D / 2)));
  const kern = gpu.kernel('rope_forward', shader, { entry: 'append', overrides: { WG } });
  gpu.dispatch(kern, [k, positions, cos, sin, kc, v, vc, q], params([1, T, Hkv, D, P, H]), grid(Math.ceil((T * H * D) / 2 / WG)));
}

/**
 * q = rope(q) and k = rope(k) in place in one dispatch (as ropeForward on each). q: (B, T, H, D),
 * k: (B, T, Hkv, D), the other arguments as ropeForward's.
 */
export function ropeForwardQk(
  gpu: Gpu, q: Binding, k: Binding, positions: Binding, cos: Binding, sin: Binding, B: number, T: number, H: number, Hkv: number, D: number,
): void {
  if (D % 2 !== 0) throw new RangeError(`rope_forward: D must be even, got ${D}`);
  const P = Math.floor(cos.size / (4 * (D / 2)));
  const kern = gpu.kernel('rope_forward', shader, { entry: 'qk', overrides: { WG } });
  gpu.dispatch(kern, [k, positions, cos, sin, undefined, undefined, undefined, q], params([B, T, Hkv, D, P, H]), grid(Math.ceil((B * T * (H + Hkv) * D) / 2 / WG)));
}
