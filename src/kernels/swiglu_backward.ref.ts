// CPU twin of shaders/swiglu_backward.wgsl. Checked against PyTorch autograd (fixtures/goldens/
// swiglu.json) and by finite differences.
import { GELU_K, geluTanh, sigmoid } from './swiglu_forward.ref.ts';

export function swigluBackwardRef(
  dg: Float32Array, // (N, F) out
  du: Float32Array, // (N, F) out
  dh: Float32Array, // (N, F)
  g: Float32Array, // (N, F)
  u: Float32Array, // (N, F)
  N: number,
  F: number,
  act: 'silu' | 'gelu_tanh' = 'silu', // SwiGLU, or Gemma's GeGLU
): void {
  for (let i = 0; i < N * F; i++) {
    if (act === 'gelu_tanh') {
      const v = g[i], t = Math.tanh(GELU_K * (v + 0.044715 * v * v * v));
      dg[i] = dh[i] * u[i] * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * GELU_K * (1 + 3 * 0.044715 * v * v));
      du[i] = dh[i] * geluTanh(v);
      continue;
    }
    const s = sigmoid(g[i]);
    dg[i] = dh[i] * u[i] * s * (1 + g[i] * (1 - s));
    du[i] = dh[i] * g[i] * s;
  }
}
