// Global L2 norm of all LoRA gradients, which live in one flat f32 buffer (every adapter tensor is a
// view into it), as torch.nn.utils.clip_grad_norm_ computes it (norm_type 2):
//   sumsq = sum_i grad[i]^2,  norm = sqrt(sumsq)      written to norm (2) = [sumsq, norm]
// The result stays on the GPU: adamw.wgsl reads norm[1] to clip, so a step needs no readback.
// Shapes: grad (n); partials (P) with P = ceil(n / (WG * ITEMS)), scratch.
// Version 2: two-stage reduction. Entry `partial_sums`: each workgroup sums the squares of a contiguous
// chunk of WG * ITEMS elements (threads stride by WG, so loads are coalesced) and writes one partial.
// Entry `finish`: one workgroup sums the P partials the same way. The workgroup sum uses subgroupAdd
// and one barrier over the num_subgroups partials where the device has `subgroups`
// (src/kernels/subgroups.ts), else a tree in workgroup memory (log2(WG) barriers).
// f32 throughout; a chunk of 4096 squares then a few thousand partials keeps the relative error near
// 1e-6 at 10M parameters, far inside what clipping needs. The sum order is fixed, so it is deterministic.

//#if subgroups
enable subgroups;
//#endif

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

//#include block_ids
//#include block_sum

@compute @workgroup_size(WG)
fn partial_sums(id: Ids) {
  let lid = id.lid;
  let w = id.wid.x + id.wid.y * id.nwg.x;
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
  let total = block_sum(id, s);
  if (lid == 0u && w < p.numPartials) { partials[w] = total; }
}

@compute @workgroup_size(WG)
fn finish(id: Ids) {
  var s = 0.0;
  for (var i = id.lid; i < p.numPartials; i += WG) { s += partials[i]; }
  let total = block_sum(id, s);
  if (id.lid == 0u) {
    norm[0] = total;
    norm[1] = sqrt(total);
  }
}
