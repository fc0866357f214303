// CPU twin of shaders/rmsnorm_forward.wgsl: the definition of correct. Plain loops, f32 storage,
// f64 accumulation (the GPU sums in f32 in a tree; the tolerance in the test covers the difference).

export function rmsnormForwardRef(
  y: Float32Array, // (N, C) out
  rstd: Float32Array, // (N) out
  x: Float32Array, // (N, C)
  w: Float32Array, // (C)
  N: number,
  C: number,
  eps: number,
  add = false, // the `add` entry: y += the normed row
): void {
  for (let n = 0; n < N; n++) {
    let ss = 0;
    for (let c = 0; c < C; c++) ss += x[n * C + c] * x[n * C + c];
    const r = 1 / Math.sqrt(ss / C + eps);
    rstd[n] = r;
    for (let c = 0; c < C; c++) y[n * C + c] = (add ? y[n * C + c] : 0) + w[c] * Math.fround(x[n * C + c] * r);
  }
}
