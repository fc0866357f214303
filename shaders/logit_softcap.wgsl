// Final-logit softcapping for inference (Gemma 2, and Gemma 3 when configured; HF
// Gemma2ForCausalLM.forward: logits = tanh(logits / c) · c), in place:
//   x[i] <- c · tanh(x[i] / c)
// Shapes: x (n) f32, the logits rows of a forward or a decode step. Training does not use it: the
// fused cross-entropy applies the same cap and its derivative (cross_entropy.wgsl).
// tanh is formed from exp(-2|x|), which cannot overflow (sinh/cosh-based tanh can give inf / inf).
// Version 1: elementwise, one invocation per element.

override WG: u32 = 256;

struct Params {
  n: u32,
  cap: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;  // (n)

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * WG + lid;
  if (i >= p.n) { return; }  // no barriers in this kernel
  let a = x[i] / p.cap;
  let e = exp(-2.0 * abs(a));
  x[i] = p.cap * sign(a) * (1.0 - e) / (1.0 + e);
}
