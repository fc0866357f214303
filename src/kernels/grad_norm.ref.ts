// CPU twin of shaders/grad_norm.wgsl: the global L2 norm of the flat gradient buffer, as
// torch.nn.utils.clip_grad_norm_ (norm_type 2) returns it. f64 accumulation.

export function gradNormRef(
  norm: Float32Array, // (2) out: [sumsq, norm]
  grad: Float32Array, // (n)
  n: number,
): void {
  let s = 0;
  for (let i = 0; i < n; i++) s += grad[i] * grad[i];
  norm[0] = s;
  norm[1] = Math.sqrt(s);
}
