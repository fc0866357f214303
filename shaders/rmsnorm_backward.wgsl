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

var<workgroup> partial: array<f32, WG>;

struct Ids {
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
  @builtin(local_invocation_index) lid: u32,
//#if subgroups
  @builtin(subgroup_invocation_id) lane: u32,
  @builtin(subgroup_id) sg: u32,
  @builtin(num_subgroups) nsg: u32,
//#endif
}

// Sum of v over the workgroup, in every invocation; every invocation must call it (it has barriers).
fn block_sum(id: Ids, v: f32) -> f32 {
//#if subgroups
  let s = subgroupAdd(v);
  if (id.lane == 0u) { partial[id.sg] = s; }
  workgroupBarrier();
  var t = 0.0;
  for (var i = 0u; i < id.nsg; i++) { t += partial[i]; }
  return t;
//#else
  partial[id.lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (id.lid < s) { partial[id.lid] += partial[id.lid + s]; }
    workgroupBarrier();
  }
  return partial[0];
//#endif
}

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
