import shader from '../../shaders/rope_backward.wgsl?raw';
import { grid, params, type Binding, type Gpu } from '../gpu/runtime.ts';

const WG = 256;

/**
 * dx = rope^T(dy) in place: `dx` holds dy on entry. dx: (B, T, Hn, D); positions: (B*T) u32;
 * cos, sin: (P, D/2), the same tables as the forward pass.
 */
export function ropeBackward(
  gpu: Gpu, dx: Binding, positions: Binding, cos: Binding, sin: Binding, B: number, T: number, Hn: number, D: number,
): void {
  if (D % 2 !== 0) throw new RangeError(`rope_backward: D must be even, got ${D}`);
  const P = Math.floor(cos.size / (4 * (D / 2)));
  const k = gpu.kernel('rope_backward', shader, { overrides: { WG } });
  gpu.dispatch(k, [dx, positions, cos, sin], params([B, T, Hn, D, P, 0]), grid(Math.ceil((B * T * Hn * D) / 2 / WG)));
}

/** dq and dk through rope^T in place in one dispatch (as ropeBackward on each). dq: (B, T, H, D),
 *  dk: (B, T, Hkv, D). */
export function ropeBackwardQk(
  gpu: Gpu, dq: Binding, dk: Binding, positions: Binding, cos: Binding, sin: Binding, B: number, T: number, H: number, Hkv: number, D: number,
): void {
  if (D % 2 !== 0) throw new RangeError(`rope_backward: D must be even, got ${D}`);
  const P = Math.floor(cos.size / (4 * (D / 2)));
  const k = gpu.kernel('rope_backward', shader, { entry: 'qk', overrides: { WG } });
  gpu.dispatch(k, [dk, positions, cos, sin, dq], params([B, T, Hkv, D, P, H]), grid(Math.ceil((B * T * (H + Hkv) * D) / 2 / WG)));
}
