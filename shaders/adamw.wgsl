// AdamW step over all LoRA parameters at once: params, grads, m (exp_avg) and v (exp_avg_sq) are each
// one flat f32 buffer, so the whole optimizer is one dispatch, with gradient clipping.
// Reference: torch 1.13 torch.optim.AdamW(foreach=False), `_single_tensor_adamw`, after
// torch.nn.utils.clip_grad_norm_(params, maxGradNorm):
//   g     = grad * gradScale * clip,  clip = min(1, maxGradNorm / (‖grad * gradScale‖ + 1e-6)),
//           or 1 when maxGradNorm == 0 (clipping off)
//   param = param * (1 - lr * wd)
//   m     = m * beta1 + g * (1 - beta1)           (torch 1.13: mul_.add_; later versions lerp_, same math)
//   v     = v * beta2 + (1 - beta2) * g * g
//   param = param - (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)      eps after the sqrt
// bc1 = 1 - beta1^t, bc2 = 1 - beta2^t and the other scalar combinations are formed on the host in
// f64 and rounded to f32 once, as torch does with its Python-float scalars.
// ‖grad‖ is read from norm[1], written on the GPU by grad_norm.wgsl: no readback in the step.
// Shapes: param, m, v, grad (n); norm (2) = [sumsq, norm].
// Version 1: one element per invocation, WG threads, 2-D grid for n > 65535 * WG. Scalar loads so
// any n works (a vec4 variant needs the arena padded to 4; bandwidth-bound either way).

override WG: u32 = 256;

struct Params {
  n: u32,
  decay: f32,          // 1 - lr * weightDecay
  beta1: f32,
  oneMinusBeta1: f32,
  beta2: f32,
  oneMinusBeta2: f32,
  eps: f32,
  stepSize: f32,       // lr / bc1
  bc2Sqrt: f32,        // sqrt(bc2)
  maxGradNorm: f32,    // 0: no clipping
  gradScale: f32,      // applied to the gradient before clipping
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;  // (n)
@group(0) @binding(2) var<storage, read_write> m: array<f32>;      // (n) exp_avg
@group(0) @binding(3) var<storage, read_write> v: array<f32>;      // (n) exp_avg_sq
@group(0) @binding(4) var<storage, read> grad: array<f32>;         // (n)
@group(0) @binding(5) var<storage, read> norm: array<f32>;         // (2) from grad_norm

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * WG + lid;
  if (i >= p.n) { return; }  // no barriers in this kernel, so an early return is safe
  // The same coefficient in every invocation (uniform inputs only); recomputing it is cheaper than a
  // third dispatch.
  var clip = 1.0;
  if (p.maxGradNorm > 0.0) {
    let total = norm[1] * abs(p.gradScale);
    clip = min(1.0, p.maxGradNorm / (total + 1e-6));
  }
  let g = grad[i] * p.gradScale * clip;
  let mi = m[i] * p.beta1 + g * p.oneMinusBeta1;
  let vi = v[i] * p.beta2 + p.oneMinusBeta2 * g * g;
  m[i] = mi;
  v[i] = vi;
  let denom = sqrt(vi) / p.bc2Sqrt + p.eps;
  param[i] = param[i] * p.decay - p.stepSize * mi / denom;
}
