// Global L2 norm of all LoRA gradients, which live in one flat f32 buffer (every adapter tensor is a
// view into it), as torch.nn.utils.clip_grad_norm_ computes it (norm_type 2):
//   sumsq = sum_i grad[i]^2,  norm = sqrt(sumsq)      written to norm (2) = [sumsq, norm]
// The result stays on the GPU: adamw.wgsl reads norm[1] to clip, so a step needs no readback.
// Shapes: grad (n); partials (P) with P = ceil(n / (WG * ITEMS)), scratch.
// Version 1: two-stage reduction. Entry `partial_sums`: each workgroup sums the squares of a contiguous
// chunk of WG * ITEMS elements (threads stride by WG, so loads are coalesced) with a tree in workgroup
// memory and writes one partial. Entry `finish`: one workgroup sums the P partials the same way.
// f32 throughout; a chunk of 4096 squares then a few thousand partials keeps the relative error near
// 1e-6 at 10M parameters, far inside what clipping needs. The sum order is fixed, so it is deterministic.

override WG: u32 = 256;
override ITEMS: u32 = 16;

struct Params {
  n: u32,
  numPartials: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> norm: array<f32>;      // (2): sumsq, norm
@group(0) @binding(2) var<storage, read_write> partials: array<f32>;  // (P) scratch
@group(0) @binding(3) var<storage, read> grad: array<f32>;            // (n)

var<workgroup> tree: array<f32, WG>;

// Sum of `tree` over the workgroup; every invocation must call it (it has barriers).
fn reduce(lid: u32, v: f32) -> f32 {
  tree[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { tree[lid] += tree[lid + s]; }
    workgroupBarrier();
  }
  return tree[0];
}

@compute @workgroup_size(WG)
fn partial_sums(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
           @builtin(local_invocation_index) lid: u32) {
  let w = wid.x + wid.y * nwg.x;
  // Spare workgroups of a 2-D grid (w >= numPartials) find no elements in range and write nothing.
  let base = w * WG * ITEMS;
  var s = 0.0;
  for (var i = 0u; i < ITEMS; i++) {
    let idx = base + i * WG + lid;
    if (idx < p.n) {
      let g = grad[idx];
      s = fma(g, g, s);
    }
  }
  let total = reduce(lid, s);
  if (lid == 0u && w < p.numPartials) { partials[w] = total; }
}

@compute @workgroup_size(WG)
fn finish(@builtin(local_invocation_index) lid: u32) {
  var s = 0.0;
  for (var i = lid; i < p.numPartials; i += WG) { s += partials[i]; }
  let total = reduce(lid, s);
  if (lid == 0u) {
    norm[0] = total;
    norm[1] = sqrt(total);
  }
}
