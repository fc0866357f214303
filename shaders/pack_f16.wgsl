// f16 storage of saved activations without shader-f16: `pack` rounds n f32 values to f16 and stores
// them two per u32 word (element e in the low half of word e/2 when e is even, pack2x16float
// order); `unpack` widens them back to f32 exactly (unpack2x16float). The model packs one layer's
// saved activations after its forward and unpacks them before its backward (docs/performance.md,
// "f16 storage"); all arithmetic stays f32.
// Values beyond the f16 range are clamped to ±65504 first: WGSL leaves pack2x16float of an
// out-of-range value indeterminate, and a saturated activation is a better gradient input than inf.
// Shapes: x (n) f32; w (ceil(n/2)) u32. An odd n leaves the last high half +0 and unpack writes n
// values only.
// Version 1: one invocation per word.

override WG: u32 = 256;

struct Params {
  n: u32,  // f32 elements
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> w: array<u32>;  // pack: out
@group(0) @binding(2) var<storage, read> x: array<f32>;        // pack: in
@group(0) @binding(1) var<storage, read_write> y: array<f32>;  // unpack: out
@group(0) @binding(2) var<storage, read> w_in: array<u32>;     // unpack: in

const F16_MAX: f32 = 65504.0;

@compute @workgroup_size(WG)
fn pack(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * WG + lid;
  let e = 2u * i;
  if (e >= p.n) { return; }  // no barriers in this kernel
  let lo = clamp(x[e], -F16_MAX, F16_MAX);
  var hi = 0.0;
  if (e + 1u < p.n) { hi = clamp(x[e + 1u], -F16_MAX, F16_MAX); }
  w[i] = pack2x16float(vec2f(lo, hi));
}

@compute @workgroup_size(WG)
fn unpack(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
          @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * WG + lid;
  let e = 2u * i;
  if (e >= p.n) { return; }
  let v = unpack2x16float(w_in[i]);
  y[e] = v.x;
  if (e + 1u < p.n) { y[e + 1u] = v.y; }
}
