// CPU twin of shaders/swiglu_forward.wgsl: the definition of correct. f64 math, f32 storage.

/** sigmoid(v) through exp(-|v|), which cannot overflow. */
export function sigmoid(v: number): number {
  const e = Math.exp(-Math.abs(v));
  return v >= 0 ? 1 / (1 + e) : e / (1 + e);
}

export function swigluForwardRef(
  h: Float32Array, // (N, F) out
  g: Float32Array, // (N, F) gate_proj output
  u: Float32Array, // (N, F) up_proj output
  N: number,
  F: number,
): void {
  for (let i = 0; i < N * F; i++) h[i] = g[i] * sigmoid(g[i]) * u[i];
}
