// The NF4 codebook in workgroup memory, the one call that fills it and the decoders that read it
// (unscaled: the caller applies the block's absmax), for the kernels that decode through a LUT
// (matmul_nf4, matmul_nf4_fused, matmul_nf4_backward, matvec_nf4, matvec_nf4_fused;
// `//#include nf4_lut`, src/gpu/wgsl-lib.ts says how). A kernel calls the decoders its layout
// needs; the others stay unused. The including shader declares (the contract): `override DQ:
// bool`, the workgroup size WG (const or override), and includes nf4_tables (NF4, DMAP, `dmap`).

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

// The code of flat element f in a packed word w (f's word), unscaled.
fn nibble(w: u32, f: u32) -> f32 {
  let shift = 8u * ((f >> 1u) & 3u) + select(4u, 0u, (f & 1u) == 1u);
  return lut[(w >> shift) & 15u];
}

// The 4 codes at flat f .. f + 3 (f % 4 == 0) of code word w: bytes 2h, 2h + 1, high nibble first.
fn codes4(w: u32, f: u32) -> vec4<f32> {
  let bytes = w >> (16u * ((f >> 2u) & 1u));
  let c = vec4<u32>(bytes >> 4u, bytes, bytes >> 12u, bytes >> 8u) & vec4<u32>(15u);
  return vec4<f32>(lut[c.x], lut[c.y], lut[c.z], lut[c.w]);
}

// The 8 codebook values of one packed word in element order e0..e7 (e0 = high nibble of byte 0),
// unscaled: the caller applies absmax once per 32 codes.
fn decodeLo(w: u32) -> vec4<f32> {
  return vec4<f32>(lut[(w >> 4u) & 15u], lut[w & 15u], lut[(w >> 12u) & 15u], lut[(w >> 8u) & 15u]);
}
fn decodeHi(w: u32) -> vec4<f32> {
  return vec4<f32>(lut[(w >> 20u) & 15u], lut[(w >> 16u) & 15u], lut[(w >> 28u) & 15u], lut[(w >> 24u) & 15u]);
}
