// CPU twin of shaders/matvec.wgsl: the definition of correct. Plain loops over the stored layouts,
// f64 accumulation (the GPU sums in f32, per lane then in a tree; the test tolerance covers the
// difference), one rounding to f32 at the end as the kernel's store does.

export interface MatvecOptions {
  /** y += alpha·x·Wᵀ instead of y = alpha·x·Wᵀ. */
  accumulate?: boolean;
  alpha?: number;
}

export function matvecRef(
  y: Float32Array, // (M, N) out; added to when accumulate
  x: Float32Array, // (M, K)
  W: Float32Array, // (N, K)
  M: number,
  N: number,
  K: number,
  opts: MatvecOptions = {},
): void {
  const { accumulate = false, alpha = 1 } = opts;
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += x[m * K + k] * W[n * K + k];
      const v = alpha * s;
      y[m * N + n] = accumulate ? y[m * N + n] + v : v;
    }
  }
}
