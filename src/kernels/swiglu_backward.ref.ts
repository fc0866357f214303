// CPU twin of shaders/swiglu_backward.wgsl. Checked against PyTorch autograd (fixtures/goldens/
// swiglu.json) and by finite differences.
import { sigmoid } from './swiglu_forward.ref.ts';

export function swigluBackwardRef(
  dg: Float32Array, // (N, F) out
  du: Float32Array, // (N, F) out
  dh: Float32Array, // (N, F)
  g: Float32Array, // (N, F)
  u: Float32Array, // (N, F)
  N: number,
  F: number,
): void {
  for (let i = 0; i < N * F; i++) {
    const s = sigmoid(g[i]);
    dg[i] = dh[i] * u[i] * s * (1 + g[i] * (1 - s));
    du[i] = dh[i] * g[i] * s;
  }
}
