// CPU twin of shaders/matmul.wgsl: the definition of correct. Plain loops over the stored layouts,
// f64 accumulation (the GPU sums in f32 in K order; the test tolerance covers the difference), one
// rounding to f32 at the end as the kernel's store does.

export interface MatmulOptions {
  /** a is stored (K, M) and read as its transpose. */
  transA?: boolean;
  /** b is stored (N, K) and read as its transpose: X·Wᵀ, as nn.Linear computes it. */
  transB?: boolean;
  /** c += alpha·op(a)·op(b) instead of c = alpha·op(a)·op(b). */
  accumulate?: boolean;
  alpha?: number;
  /** Independent products in one call; entry i of a, b, c starts at i·strideA, i·strideB, i·strideC. */
  batch?: number;
  /** Elements between batch entries; defaults are the packed sizes M·K, K·N, M·N (0 broadcasts). */
  strideA?: number;
  strideB?: number;
  strideC?: number;
}

export function matmulRef(
  c: Float32Array, // (batch, M, N) out
  a: Float32Array, // (batch, M, K), or (batch, K, M) when transA
  b: Float32Array, // (batch, K, N), or (batch, N, K) when transB
  M: number,
  N: number,
  K: number,
  opts: MatmulOptions = {},
): void {
  const { transA = false, transB = false, accumulate = false, alpha = 1, batch = 1 } = opts;
  const strideA = opts.strideA ?? M * K, strideB = opts.strideB ?? K * N, strideC = opts.strideC ?? M * N;
  for (let bi = 0; bi < batch; bi++) {
    const a0 = bi * strideA, b0 = bi * strideB, c0 = bi * strideC;
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let acc = 0;
        for (let k = 0; k < K; k++) {
          const av = transA ? a[a0 + k * M + m] : a[a0 + m * K + k];
          const bv = transB ? b[b0 + n * K + k] : b[b0 + k * N + n];
          acc += av * bv;
        }
        const v = alpha * acc;
        c[c0 + m * N + n] = accumulate ? c[c0 + m * N + n] + v : v;
      }
    }
  }
}
