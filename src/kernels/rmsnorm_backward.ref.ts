// CPU twin of shaders/rmsnorm_backward.wgsl. Checked against PyTorch autograd (fixtures/goldens/
// rmsnorm.json) and by finite differences.

export function rmsnormBackwardRef(
  dx: Float32Array, // (N, C) out; added to when accumulate
  dy: Float32Array, // (N, C)
  x: Float32Array, // (N, C)
  w: Float32Array, // (C)
  rstd: Float32Array, // (N)
  N: number,
  C: number,
  accumulate = false,
): void {
  for (let n = 0; n < N; n++) {
    const r = rstd[n];
    let m = 0;
    for (let c = 0; c < C; c++) m += w[c] * dy[n * C + c] * x[n * C + c] * r;
    m /= C;
    for (let c = 0; c < C; c++) {
      const i = n * C + c;
      const v = r * (w[c] * dy[i] - x[i] * r * m);
      dx[i] = accumulate ? dx[i] + v : v;
    }
  }
}
