// The gate activations of the gated MLPs (SwiGLU's SiLU through a stable sigmoid, GeGLU's GELU
// with the tanh approximation), for swiglu_forward, swiglu_backward and the NF4 kernels that fuse
// them (matmul_nf4_fused, matmul_nf4_backward, matvec_nf4_fused): `//#include glu_act`
// (src/gpu/wgsl-lib.ts says how). Nothing is asked of the including shader.

// 1 + tanh(x) and 1 - tanh(x) from e = exp(-2|x|), which cannot overflow: 2/(1+e) on one side,
// 2e/(1+e) on the other. Forming 1 + tanh(x) from tanh itself would cancel in GELU's negative tail,
// where the values are small but the gradient still counts.
fn one_pm_tanh(x: f32) -> vec2f {
  let e = exp(-2.0 * abs(x));
  let big = 2.0 / (1.0 + e);
  let small = 2.0 * e / (1.0 + e);
  if (x >= 0.0) { return vec2f(big, small); }
  return vec2f(small, big);
}

// sqrt(2 / pi), the tanh approximation's constant (torch's gelu(approximate="tanh")).
const GELU_K: f32 = 0.7978845608028654;

// The logistic function from exp(-|v|), which cannot overflow.
fn sigmoid(v: f32) -> f32 {
  let e = exp(-abs(v));
  return select(e / (1.0 + e), 1.0 / (1.0 + e), v >= 0.0);
}
