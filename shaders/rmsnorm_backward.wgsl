// RMSNorm backward with respect to the input (the norm weight is frozen under LoRA, so no dw):
//   xhat = x * rstd,  g = w * dy
//   dx[n,c] = rstd[n] * (g[n,c] - xhat[n,c] * mean_c(g[n,c] * xhat[n,c]))
// Shapes: dx, dy, x (N, C); w (C); rstd (N) from the forward pass.
// Accumulates into dx when ACCUMULATE is set: the residual stream's gradient arrives there first.
// Version 2: one workgroup per row; the row sum is reduced with subgroupAdd and one barrier over the
// num_subgroups partials where the device has `subgroups` (src/kernels/subgroups.ts), else with a
// tree in workgroup memory (log2(WG) barriers).

//#if subgroups
enable subgroups;
//#endif

override WG: u32 = 128;
override ACCUMULATE: bool = false;

struct Params {
  N: u32,
  C: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> dx: array<f32>;   // (N, C)
@group(0) @binding(2) var<storage, read> dy: array<f32>;         // (N, C)
@group(0) @binding(3) var<storage, read> x: array<f32>;          // (N, C)
@group(0) @binding(4) var<storage, read> w: array<f32>;          // (C)
@group(0) @binding(5) var<storage, read> rstd: array<f32>;       // (N)

//#include block_ids
//#include block_sum

@compute @workgroup_size(WG)
fn main(id: Ids) {
  let lid = id.lid;
  let n = id.wid.x + id.wid.y * id.nwg.x;
  let live = n < p.N;
  let base = n * p.C;
  var r = 0.0;
  var acc = 0.0;
  if (live) {
    r = rstd[n];
    for (var c = lid; c < p.C; c += WG) {
      acc += w[c] * dy[base + c] * (x[base + c] * r);
    }
  }
  let m = block_sum(id, acc) / f32(p.C);
  if (live) {
    for (var c = lid; c < p.C; c += WG) {
      let v = r * (w[c] * dy[base + c] - (x[base + c] * r) * m);
      if (ACCUMULATE) { dx[base + c] += v; } else { dx[base + c] = v; }
    }
  }
}
