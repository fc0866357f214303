// CPU twin of shaders/adamw.wgsl: torch 1.13 `_single_tensor_adamw` after clip_grad_norm_, over a flat
// arena. Each update is computed in f64 from the f32 state and stored back to f32.
import type { AdamWConfig } from './adamw.ts';

export function adamwRef(
  param: Float32Array, // (n) updated in place
  m: Float32Array, // (n) exp_avg, updated in place
  v: Float32Array, // (n) exp_avg_sq, updated in place
  grad: Float32Array, // (n)
  norm: number, // ‖grad‖₂ over the whole arena (grad_norm's norm[1])
  n: number,
  c: AdamWConfig,
): void {
  const gs = c.gradScale ?? 1;
  // clip_grad_norm_: coef = max_norm / (total_norm + 1e-6), clamped to 1; max_norm 0 = no clipping.
  const clip = c.maxGradNorm > 0 ? Math.min(1, c.maxGradNorm / (norm * Math.abs(gs) + 1e-6)) : 1;
  const bc1 = 1 - c.beta1 ** c.step;
  const bc2 = 1 - c.beta2 ** c.step;
  for (let i = 0; i < n; i++) {
    const g = grad[i] * gs * clip;
    param[i] = param[i] * (1 - c.lr * c.weightDecay);
    m[i] = m[i] * c.beta1 + g * (1 - c.beta1);
    v[i] = v[i] * c.beta2 + (1 - c.beta2) * g * g;
    const denom = Math.sqrt(v[i]) / Math.sqrt(bc2) + c.eps;
    param[i] = param[i] - (c.lr / bc1) * m[i] / denom;
  }
}
