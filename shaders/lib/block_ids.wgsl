// Ids, the entry-point parameter struct of the row and block reductions (rmsnorm_forward,
// rmsnorm_backward, cross_entropy, grad_norm): the workgroup's ids and the invocation's, with the
// subgroup builtins on the subgroup path. `//#include block_ids` (src/gpu/wgsl-lib.ts says how); the
// including shader has `enable subgroups;` in an `//#if subgroups` block and is built through
// reductionKernel (src/kernels/subgroups.ts), which cuts this file's block too.

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
