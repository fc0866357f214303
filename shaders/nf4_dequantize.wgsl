// NF4 dequantization, bitsandbytes dequantize_4bit (nf4) (docs/nf4.md#dequantization):
//   w[i] = NF4[code_i] * absmax[i / BS], the product in f32 (bitsandbytes keeps it in f32),
//   code_i = high nibble of byte i/2 for even i, low nibble for odd i.
// Shapes: w (n) = weight (N, K) flattened row-major; packed (ceil(n / 8)) little-endian u32 words;
// absmax (ceil(n / BS)) f32, or with DQ the double-quantized words of src/quant/nf4.ts
// packDoubleQuant (8-bit codes, absmax2 per 256 blocks, offset), decoded per block in blockScale.
// The training path never calls this (matmul_nf4 dequantizes tiles in workgroup memory); it exists
// for inspection, export and tests. The result is bit-identical to the CPU twin: one f32 multiply.
// Version 1: one invocation per u32 word (8 outputs), 1-D grid folded into 2-D for > 65535 groups.

override WG: u32 = 128;
override BS: u32 = 64;   // blocksize
override DQ: bool = false;        // absmax holds double-quantized words, not f32 (see blockScale)

struct Params {
  n: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> w: array<f32>;   // (n) = (N, K)
@group(0) @binding(2) var<storage, read> packed: array<u32>;    // (ceil(n / 8))
@group(0) @binding(3) var<storage, read> absmax: array<u32>;    // (ceil(n / BS)) f32 bits, or DQ words

//#include nf4_tables
//#include nf4_block_scale

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  if (DQ) {
    for (var i = lid; i < 256u; i += WG) { dmap[i] = bitcast<f32>(DMAP[i]); }
  }
  workgroupBarrier();
  let word = (wid.x + wid.y * nwg.x) * WG + lid;
  let e0 = word * 8u;
  if (e0 >= p.n) { return; }   // past the only barrier, so an early exit is safe
  let bits = packed[word];
  for (var j = 0u; j < 8u; j++) {
    let i = e0 + j;
    if (i < p.n) {
      let code = (bits >> (8u * (j >> 1u) + select(4u, 0u, (j & 1u) == 1u))) & 15u;
      w[i] = bitcast<f32>(NF4[code]) * blockScale(i / BS, (p.n + BS - 1u) / BS);
    }
  }
}
