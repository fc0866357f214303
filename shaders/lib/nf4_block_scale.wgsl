// blockScale, the f32 scale of an NF4 block from a kernel's one `absmax` buffer, plain or
// double-quantized, for matmul_nf4, matvec_nf4 and nf4_dequantize (`//#include nf4_block_scale`;
// src/gpu/wgsl-lib.ts says how). The kernels that read several linears' absmax buffers
// (matmul_nf4_fused, matmul_nf4_backward, matvec_nf4_fused) fetch the words themselves.
// The including shader declares (the contract): the binding `absmax: array<u32>` (f32 bits, or DQ
// words as src/quant/nf4.ts packDoubleQuant lays them out), `override DQ: bool`, and includes
// nf4_tables, whose `dmap` it has filled when DQ.

// The f32 scale of NF4 block b (of nb). Plain: absmax[b]. DQ (src/quant/nf4.ts packDoubleQuant):
// the block's 8-bit code through the dynamic map, times its run of 256's absmax2, plus the offset:
// the f32 operations of the CPU doubleDequantize, so the scale equals the f32 absmax it replaces
// (a driver that contracts the multiply-add into one fma could differ in the last bit; SwiftShader
// does not, and the kernel tests check bit equality with the f32-absmax path).
fn blockScale(b: u32, nb: u32) -> f32 {
  if (!DQ) { return bitcast<f32>(absmax[b]); }
  let code = (absmax[b >> 2u] >> (8u * (b & 3u))) & 255u;
  let q = (nb + 3u) / 4u;
  let scaled = dmap[code] * bitcast<f32>(absmax[q + b / 256u]);
  return scaled + bitcast<f32>(absmax[q + (nb + 255u) / 256u]);
}
