// CPU twin of shaders/swiglu_forward.wgsl: the definition of correct. f64 math, f32 storage.

/** sigmoid(v) through exp(-|v|), which cannot overflow. */
export function sigmoid(v: number): number {
  const e = Math.exp(-Math.abs(v));
  return v >= 0 ? 1 / (1 + e) : e / (1 + e);
}

/** sqrt(2 / pi), the constant of torch's gelu(approximate="tanh"). */
export const GELU_K = Math.sqrt(2 / Math.PI);

/** gelu_pytorch_tanh (Gemma's hidden_activation). */
export function geluTanh(v: number): number {
  return 0.5 * v * (1 + Math.tanh(GELU_K * (v + 0.044715 * v * v * v)));
}

export function swigluForwardRef(
  h: Float32Array, // (N, F) out
  g: Float32Array, // (N, F) gate_proj output
  u: Float32Array, // (N, F) up_proj output
  N: number,
  F: number,
  act: 'silu' | 'gelu_tanh' = 'silu', // SwiGLU, or Gemma's GeGLU
): void {
  for (let i = 0; i < N * F; i++) h[i] = (act === 'gelu_tanh' ? geluTanh(g[i]) : g[i] * sigmoid(g[i])) * u[i];
}
