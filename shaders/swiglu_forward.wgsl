// SwiGLU forward (transformers LlamaMLP: act_fn(gate_proj(x)) * up_proj(x) with act_fn = SiLU):
//   h[i] = silu(g[i]) * u[i],  silu(v) = v * sigmoid(v)
// Shapes: h, g, u (N, F), N = B*T rows, F = intermediate size; g and u are the gate_proj and
// up_proj outputs, kept for the backward pass (which recomputes silu rather than saving it).
// Reference: torch.nn.functional.silu(g) * u.
// ACT = 1 is Gemma's GeGLU instead (GemmaMLP with hidden_activation gelu_pytorch_tanh):
//   h[i] = gelu_tanh(g[i]) * u[i],  gelu_tanh(v) = 0.5 v (1 + tanh(sqrt(2/pi) (v + 0.044715 v³)))
// sigmoid uses exp(-|v|), which never overflows: for v = -100 the textbook 1 / (1 + exp(-v))
// forms exp(100) = inf in f32; the result would still be 0, but inf * 0 traps in the backward pass.
// Version 1: elementwise, one invocation per element. Fusing it into the gate/up matmul epilogue
// (as ONNX Runtime's fused WebGPU MLP does) would save a round trip of g and u; later.

override WG: u32 = 256;
override ACT: u32 = 0;  // 0: SiLU (SwiGLU), 1: GELU with the tanh approximation (GeGLU)

struct Params {
  N: u32,
  F: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> h: array<f32>;  // (N, F)
@group(0) @binding(2) var<storage, read> g: array<f32>;        // (N, F)
@group(0) @binding(3) var<storage, read> u: array<f32>;        // (N, F)

//#include glu_act

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * WG + lid;
  if (i >= p.N * p.F) { return; }  // no barriers in this kernel
  let v = g[i];
  if (ACT == 1u) {
    h[i] = 0.5 * v * one_pm_tanh(GELU_K * (v + 0.044715 * v * v * v)).x * u[i];
  } else {
    h[i] = v * sigmoid(v) * u[i];
  }
}
