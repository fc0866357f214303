// The NF4 codebook in workgroup memory and the one call that fills it, for the kernels that decode
// through a LUT (matmul_nf4, matmul_nf4_fused, matmul_nf4_backward, matvec_nf4, matvec_nf4_fused;
// `//#include nf4_lut`, src/gpu/wgsl-lib.ts says how). The including shader declares (the
// contract): `override DQ: bool`, the workgroup size WG (const or override), and includes
// nf4_tables (NF4, DMAP and `dmap`).

var<workgroup> lut: array<f32, 16>;          // codebook in workgroup memory: 16 banks, no spills

// Fill `lut`, and `dmap` when DQ; then a barrier. Every invocation calls this first, from uniform
// control flow.
fn loadTables(lid: u32) {
  if (lid < 16u) { lut[lid] = bitcast<f32>(NF4[lid]); }
  if (DQ) {
    for (var i = lid; i < 256u; i += WG) { dmap[i] = bitcast<f32>(DMAP[i]); }
  }
  workgroupBarrier();
}
