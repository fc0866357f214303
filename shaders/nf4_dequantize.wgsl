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

const NF4 = array<u32, 16>(
  0xbf800000u, 0xbf3239b1u, 0xbf066b30u, 0xbeca32a0u, 0xbe91a24du, 0xbe3d353fu, 0xbdba7871u, 0x00000000u,
  0x3da2faffu, 0x3e24cae3u, 0x3e7c04ddu, 0x3ead033au, 0x3ee1a4b8u, 0x3f1007abu, 0x3f3913b3u, 0x3f800000u);

// bitsandbytes' 8-bit dynamic map, create_dynamic_map(signed=True) (src/quant/nf4.ts DYNAMIC_MAP),
// as f32 bits; read only when DQ. src/quant/nf4.test.ts checks this copy against the CPU table.
const DMAP = array<u32, 256>(
  0xbf7e3333u, 0xbf7a999au, 0xbf770000u, 0xbf736666u, 0xbf6fcccdu, 0xbf6c3333u, 0xbf68999au, 0xbf650000u,
  0xbf616666u, 0xbf5dcccdu, 0xbf5a3333u, 0xbf56999au, 0xbf530000u, 0xbf4f6666u, 0xbf4bcccdu, 0xbf483333u,
  0xbf44999au, 0xbf410000u, 0xbf3d6666u, 0xbf39cccdu, 0xbf363333u, 0xbf32999au, 0xbf2f0000u, 0xbf2b6666u,
  0xbf27cccdu, 0xbf243333u, 0xbf20999au, 0xbf1d0000u, 0xbf196666u, 0xbf15cccdu, 0xbf123333u, 0xbf0e999au,
  0xbf0b0000u, 0xbf076666u, 0xbf03cccdu, 0xbf003333u, 0xbef93334u, 0xbef20000u, 0xbeeaccccu, 0xbee3999au,
  0xbedc6666u, 0xbed53334u, 0xbece0000u, 0xbec6ccccu, 0xbebf999au, 0xbeb86666u, 0xbeb13334u, 0xbeaa0000u,
  0xbea2ccccu, 0xbe9b999au, 0xbe946666u, 0xbe8d3334u, 0xbe860000u, 0xbe7d9999u, 0xbe6f3333u, 0xbe60cccdu,
  0xbe526666u, 0xbe440000u, 0xbe35999au, 0xbe273333u, 0xbe18cccdu, 0xbe0a6666u, 0xbdf80000u, 0xbddb3334u,
  0xbdc9eb85u, 0xbdc428f7u, 0xbdbe6667u, 0xbdb8a3d7u, 0xbdb2e148u, 0xbdad1eb8u, 0xbda75c2au, 0xbda1999au,
  0xbd9bd70au, 0xbd96147bu, 0xbd9051ebu, 0xbd8a8f5du, 0xbd84cccdu, 0xbd7e147au, 0xbd728f5du, 0xbd670a3du,
  0xbd5b8520u, 0xbd500000u, 0xbd447ae2u, 0xbd38f5c3u, 0xbd2d70a4u, 0xbd21eb85u, 0xbd166667u, 0xbd0ae148u,
  0xbcfeb852u, 0xbce7ae15u, 0xbcd0a3d7u, 0xbcb9999au, 0xbca28f5du, 0xbc8b851fu, 0xbc68f5c3u, 0xbc3ae148u,
  0xbc1f3b64u, 0xbc160418u, 0xbc0ccccdu, 0xbc039581u, 0xbbf4bc6au, 0xbbe24dd3u, 0xbbcfdf3bu, 0xbbbd70a4u,
  0xbbab020du, 0xbb989374u, 0xbb8624ddu, 0xbb676c8au, 0xbb428f5cu, 0xbb1db22du, 0xbaf1a9fcu, 0xbaa7ef9du,
  0xba7765ffu, 0xba59e83eu, 0xba3c6a80u, 0xba1eecc1u, 0xba016f01u, 0xb9c7e283u, 0xb98ce705u, 0xb923d70bu,
  0xb8ba1f4bu, 0xb88aefb3u, 0xb8378034u, 0xb7b24206u, 0xb70205ffu, 0xb65a1a94u, 0xb513a3b7u, 0x00000000u,
  0x3513a3b7u, 0x365a1a94u, 0x370205ffu, 0x37b24206u, 0x38378034u, 0x388aefb3u, 0x38ba1f4bu, 0x3923d70bu,
  0x398ce705u, 0x39c7e283u, 0x3a016f01u, 0x3a1eecc1u, 0x3a3c6a80u, 0x3a59e83eu, 0x3a7765ffu, 0x3aa7ef9du,
  0x3af1a9fcu, 0x3b1db22du, 0x3b428f5cu, 0x3b676c8au, 0x3b8624ddu, 0x3b989374u, 0x3bab020du, 0x3bbd70a4u,
  0x3bcfdf3bu, 0x3be24dd3u, 0x3bf4bc6au, 0x3c039581u, 0x3c0ccccdu, 0x3c160418u, 0x3c1f3b64u, 0x3c3ae148u,
  0x3c68f5c3u, 0x3c8b851fu, 0x3ca28f5du, 0x3cb9999au, 0x3cd0a3d7u, 0x3ce7ae15u, 0x3cfeb852u, 0x3d0ae148u,
  0x3d166667u, 0x3d21eb85u, 0x3d2d70a4u, 0x3d38f5c3u, 0x3d447ae2u, 0x3d500000u, 0x3d5b8520u, 0x3d670a3du,
  0x3d728f5du, 0x3d7e147au, 0x3d84cccdu, 0x3d8a8f5du, 0x3d9051ebu, 0x3d96147bu, 0x3d9bd70au, 0x3da1999au,
  0x3da75c2au, 0x3dad1eb8u, 0x3db2e148u, 0x3db8a3d7u, 0x3dbe6667u, 0x3dc428f7u, 0x3dc9eb85u, 0x3ddb3334u,
  0x3df80000u, 0x3e0a6666u, 0x3e18cccdu, 0x3e273333u, 0x3e35999au, 0x3e440000u, 0x3e526666u, 0x3e60cccdu,
  0x3e6f3333u, 0x3e7d9999u, 0x3e860000u, 0x3e8d3334u, 0x3e946666u, 0x3e9b999au, 0x3ea2ccccu, 0x3eaa0000u,
  0x3eb13334u, 0x3eb86666u, 0x3ebf999au, 0x3ec6ccccu, 0x3ece0000u, 0x3ed53334u, 0x3edc6666u, 0x3ee3999au,
  0x3eeaccccu, 0x3ef20000u, 0x3ef93334u, 0x3f003333u, 0x3f03cccdu, 0x3f076666u, 0x3f0b0000u, 0x3f0e999au,
  0x3f123333u, 0x3f15cccdu, 0x3f196666u, 0x3f1d0000u, 0x3f20999au, 0x3f243333u, 0x3f27cccdu, 0x3f2b6666u,
  0x3f2f0000u, 0x3f32999au, 0x3f363333u, 0x3f39cccdu, 0x3f3d6666u, 0x3f410000u, 0x3f44999au, 0x3f483333u,
  0x3f4bcccdu, 0x3f4f6666u, 0x3f530000u, 0x3f56999au, 0x3f5a3333u, 0x3f5dcccdu, 0x3f616666u, 0x3f650000u,
  0x3f68999au, 0x3f6c3333u, 0x3f6fcccdu, 0x3f736666u, 0x3f770000u, 0x3f7a999au, 0x3f7e3333u, 0x3f800000u);
var<workgroup> dmap: array<f32, 256>;

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
