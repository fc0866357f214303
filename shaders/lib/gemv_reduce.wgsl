// The cross-lane reduction of the decode-speed matrix-vector kernels (matvec, matvec_nf4,
// matvec_nf4_fused), which lay out their work alike: GROUPS groups of WG_K lanes, group g owning
// COLS columns for all MR rows, lane t of a group holding one partial sum per (column, row) in
// `acc`. Taken with the line `//#include gemv_reduce` (src/gpu/wgsl-lib.ts says how); matvec.wgsl's
// header says why the subgroup numbering is safe.
// The including shader declares (the contract; WGSL finds them wherever they stand):
//   const MR, COLS: u32          rows and columns per group, as in `acc: array<array<f32, MR>, COLS>`
//   override WG_K, GROUPS, WG    lanes per group, groups, and WG = WG_K * GROUPS
//   override SG_REDUCE: bool     false keeps the portable numbering and sum on the subgroup path
//   `enable subgroups;` in an `//#if subgroups` block, and is built through subgroupVariant /
//   reductionKernel (src/kernels/subgroups.ts), which cut this file's `//#if subgroups` blocks too.
// It gets: `red`, the entry-point parameter structs Ids and Wg, and subSum, partsPerOutput, lane,
// storePartials and redSum.

// red[o * (WG_K + 1) + t] with o = (c * MR + m) * GROUPS + g: the WG_K partials of output o in one
// padded row, so the invocations summing neighbouring outputs read different banks.
var<workgroup> red: array<f32, COLS * MR * GROUPS * (WG_K + 1u)>;

// The invocation's ids (vary across the workgroup) and the workgroup's (the same for all its
// invocations, which WGSL's uniformity analysis sees per struct: a branch on `Wg` fields stays
// uniform, as subgroupAdd requires).
struct Ids {
  @builtin(local_invocation_index) lid: u32,
//#if subgroups
  @builtin(subgroup_invocation_id) lane: u32,
  @builtin(subgroup_id) sg: u32,
//#endif
}
struct Wg {
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
//#if subgroups
  @builtin(subgroup_size) sgs: u32,
  @builtin(num_subgroups) nsg: u32,
//#endif
}

// Whether each subgroup lies inside one column group under the numbering of `lane`, so the
// reduction may pre-sum with subgroupAdd; partials per output then.
fn subSum(wg: Wg) -> bool {
//#if subgroups
  return SG_REDUCE && wg.nsg * wg.sgs == WG && wg.sgs <= WG_K;
//#else
  return false;
//#endif
}
fn partsPerOutput(wg: Wg) -> u32 {
//#if subgroups
  if (subSum(wg)) { return WG_K / wg.sgs; }
//#endif
  return WG_K;
}

// The invocation's column group g and lane t in it.
fn lane(id: Ids, wg: Wg) -> vec2u {
  var i = id.lid;
//#if subgroups
  if (subSum(wg)) { i = id.sg * wg.sgs + id.lane; }
//#endif
  return vec2u(i / WG_K, i % WG_K);
}

// The partials of every (column c, row m) to `red` (subgroup pre-sums where subSum), then a
// barrier: call from uniform control flow, every invocation. The caller adds each output's
// partsPerOutput() partials with redSum, one invocation per output, in order: one barrier instead
// of a log2(WG_K)-step tree (a CPU implementation such as SwiftShader pays per barrier per
// workgroup; on a GPU either is small next to reading W).
fn storePartials(id: Ids, wg: Wg, acc: array<array<f32, MR>, COLS>) {
  let gt = lane(id, wg);
  for (var c = 0u; c < COLS; c++) {
    for (var m = 0u; m < MR; m++) {
      let row = ((c * MR + m) * GROUPS + gt.x) * (WG_K + 1u);
//#if subgroups
      if (subSum(wg)) {
        let s = subgroupAdd(acc[c][m]);
        if (id.lane == 0u) { red[row + gt.y / wg.sgs] = s; }
        continue;
      }
//#endif
      red[row + gt.y] = acc[c][m];
    }
  }
  workgroupBarrier();
}

// The sum of output o's first `parts` partials, in lane order.
fn redSum(o: u32, parts: u32) -> f32 {
  var s = 0.0;
  for (var i = 0u; i < parts; i++) { s += red[o * (WG_K + 1u) + i]; }
  return s;
}
