// SwiGLU backward: with s = sigmoid(g) and silu(g) = g * s,
//   dg[i] = dh[i] * u[i] * silu'(g[i]),  silu'(g) = s * (1 + g * (1 - s))
//   du[i] = dh[i] * silu(g[i])
// Shapes: dg, du, dh, g, u (N, F). silu is recomputed from the saved g (cheaper than storing it).
// Reference: autograd through F.silu(g) * u (fixtures/goldens/swiglu.json).
// ACT = 1 is GeGLU (Gemma): with a = sqrt(2/pi) (g + 0.044715 g³) and t = tanh(a),
//   gelu_tanh(g) = 0.5 g (1 + t),  gelu_tanh'(g) = 0.5 (1 + t) + 0.5 g (1 - t²) sqrt(2/pi) (1 + 3·0.044715 g²)
// dg and du are separate outputs: the caller may not alias them with g or u (a binding that is
// written must not be bound twice).
// Version 1: elementwise, one invocation per element, stable sigmoid as in swiglu_forward.

override WG: u32 = 256;
override ACT: u32 = 0;  // 0: SiLU (SwiGLU), 1: GELU with the tanh approximation (GeGLU)

struct Params {
  N: u32,
  F: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> dg: array<f32>;  // (N, F)
@group(0) @binding(2) var<storage, read_write> du: array<f32>;  // (N, F)
@group(0) @binding(3) var<storage, read> dh: array<f32>;        // (N, F)
@group(0) @binding(4) var<storage, read> g: array<f32>;         // (N, F)
@group(0) @binding(5) var<storage, read> u: array<f32>;         // (N, F)

//#include glu_act

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * WG + lid;
  if (i >= p.N * p.F) { return; }  // no barriers in this kernel
  let v = g[i];
  let d = dh[i];
  if (ACT == 1u) {
    let pm = one_pm_tanh(GELU_K * (v + 0.044715 * v * v * v));  // (1 + t, 1 - t)
    let slope = 0.5 * pm.x + 0.5 * v * (pm.x * pm.y) * GELU_K * (1.0 + 3.0 * 0.044715 * v * v);
    dg[i] = d * u[i] * slope;
    du[i] = d * (0.5 * v * pm.x);
  } else {
    let s = sigmoid(v);
    dg[i] = d * u[i] * (s * (1.0 + v * (1.0 - s)));
    du[i] = d * (v * s);
  }
}
