// The one-value workgroup sum of the row and block reductions (rmsnorm_forward, rmsnorm_backward,
// grad_norm): `//#include block_sum` (src/gpu/wgsl-lib.ts says how). With subgroups each subgroup
// adds with subgroupAdd and its first lane writes one partial at subgroup_id, then every
// invocation adds the num_subgroups partials after one barrier; without, the workgroup-memory tree
// (log2(WG) barriers). docs/kernels.md "Subgroup reductions" says more.
// The including shader declares (the contract): the workgroup size `WG` (a power of two), `enable
// subgroups;` in an `//#if subgroups` block, includes block_ids (Ids), and is built through
// reductionKernel (src/kernels/subgroups.ts), which cuts this file's `//#if subgroups` blocks too.
// It gets the workgroup array `partial` and block_sum.

var<workgroup> partial: array<f32, WG>;

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
