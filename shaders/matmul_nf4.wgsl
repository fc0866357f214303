// Fused NF4 matmul, forward of a frozen bitsandbytes Linear4bit:
//   Y (M, N) (=|+=) X (M, K) · dequant(W)ᵀ (+ bias (N))
// W (N, K) is the nn.Linear weight [out, in], NF4-packed as bitsandbytes does it (docs/nf4.md): flat
// element f = n*K + k has its code in byte f/2 (even f in the high nibble) of little-endian u32 words,
// and its scale in absmax[f / BS]. When K % BS != 0 a block crosses rows, which indexing absmax by the
// flat index handles for free. Reference op: bitsandbytes gemm_4bit (default backend) =
// torch.nn.functional.linear(X, dequantize_4bit(W), bias).
// ACCUMULATE adds into Y (Y += X·Wᵀ + bias); HAS_BIAS adds bias[n] (Qwen2 q/k/v projections).
// Version 1 (portable f32, no subgroups): 64×64 output tile per workgroup, 256 invocations, each
// computing 4×4 outputs strided by 16 (rows ty + 16i, columns tx + 16j) so that neighbouring
// invocations read neighbouring workgroup-memory words. K advances 16 at a time; per step the
// workgroup stages X (64×16) and DEQUANTIZES the W patch (64 rows × 16) into workgroup memory once,
// so each weight is decoded once and reused by 64 rows; W never exists as f32 in global memory.
// Tiles are stored k-major with a +1 stride pad, which keeps the transposing stores free of bank
// conflicts. Workgroup memory: 2 × 16 × 65 f32 + a 16-entry LUT + the 256-entry dynamic map (filled
// only under DQ) = 9.4 KiB (< 16 KiB portable).
// DQ: absmax is bitsandbytes' double quantization (8-bit codes, an f32 absmax2 per 256 blocks, the
// mean offset; layout in src/quant/nf4.ts packDoubleQuant), decoded per block by blockScale.
// Everything is bounds-checked (ragged M, N, K); out-of-range loads read 0. A later version can add
// `fit` variants without checks and BK = 64 (one absmax per row per step) when K % 64 == 0.

override ACCUMULATE: bool = false;
override HAS_BIAS: bool = false;
override BS: u32 = 64;        // NF4 blocksize
override DQ: bool = false;        // absmax holds double-quantized words, not f32 (see blockScale)

const TM = 64u;               // rows of Y per workgroup
const TN = 64u;               // columns of Y per workgroup
const TK = 16u;               // reduction step
const WG = 256u;              // 16 × 16 invocations
const S = 65u;                // padded stride of the k-major tiles

struct Params {
  M: u32,
  N: u32,
  K: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> Y: array<f32>;      // (M, N)
@group(0) @binding(2) var<storage, read> X: array<f32>;            // (M, K)
@group(0) @binding(3) var<storage, read> Wq: array<u32>;           // (ceil(N*K / 8)) packed NF4 of W (N, K)
@group(0) @binding(4) var<storage, read> absmax: array<u32>;       // (ceil(N*K / BS)) f32 bits, or DQ words
@group(0) @binding(5) var<storage, read> bias: array<f32>;         // (N), read only when HAS_BIAS

const NF4 = array<u32, 16>(
  0xbf800000u, 0xbf3239b1u, 0xbf066b30u, 0xbeca32a0u, 0xbe91a24du, 0xbe3d353fu, 0xbdba7871u, 0x00000000u,
  0x3da2faffu, 0x3e24cae3u, 0x3e7c04ddu, 0x3ead033au, 0x3ee1a4b8u, 0x3f1007abu, 0x3f3913b3u, 0x3f800000u);

var<workgroup> lut: array<f32, 16>;          // codebook in workgroup memory: 16 banks, no spills
var<workgroup> Xs: array<f32, TK * S>;       // Xs[k * S + m]
var<workgroup> Ws: array<f32, TK * S>;       // Ws[k * S + n] = dequant(W)[n0 + n, k0 + k]

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

// dequant(W) at flat index f = n*K + k, read through the workgroup LUT.
fn weight(f: u32) -> f32 {
  let shift = 8u * ((f >> 1u) & 3u) + select(4u, 0u, (f & 1u) == 1u);
  let code = (Wq[f >> 3u] >> shift) & 15u;
  return lut[code] * blockScale(f / BS, (p.N * p.K + BS - 1u) / BS);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let tilesN = (p.N + TN - 1u) / TN;
  let tile = wid.x + wid.y * nwg.x;
  // A tile past the end (2-D grid rounding) gets m0 >= M: it loads zeros and stores nothing, but
  // still takes part in every barrier.
  let m0 = (tile / tilesN) * TM;
  let n0 = (tile % tilesN) * TN;
  let tx = lid % 16u;
  let ty = lid / 16u;

  if (lid < 16u) { lut[lid] = bitcast<f32>(NF4[lid]); }
  if (DQ) { dmap[lid] = bitcast<f32>(DMAP[lid]); }   // WG = 256 entries
  workgroupBarrier();

  var acc: array<array<f32, 4>, 4>;
  for (var k0 = 0u; k0 < p.K; k0 += TK) {
    // Stage 64×16 of X and 64×16 of W: 1024 elements each, 4 per invocation. Neighbouring
    // invocations take neighbouring k, the contiguous direction of both X and W in memory.
    for (var r = 0u; r < 4u; r++) {
      let e = lid + r * WG;
      let k = e % TK;
      let row = e / TK;
      let gk = k0 + k;
      var xv = 0.0;
      let gm = m0 + row;
      if (gm < p.M && gk < p.K) { xv = X[gm * p.K + gk]; }
      Xs[k * S + row] = xv;
      var wv = 0.0;
      let gn = n0 + row;
      if (gn < p.N && gk < p.K) { wv = weight(gn * p.K + gk); }
      Ws[k * S + row] = wv;
    }
    workgroupBarrier();
    for (var k = 0u; k < TK; k++) {
      var a: array<f32, 4>;
      var b: array<f32, 4>;
      for (var i = 0u; i < 4u; i++) { a[i] = Xs[k * S + ty + 16u * i]; }
      for (var j = 0u; j < 4u; j++) { b[j] = Ws[k * S + tx + 16u * j]; }
      for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) { acc[i][j] = fma(a[i], b[j], acc[i][j]); }
      }
    }
    workgroupBarrier();
  }

  for (var i = 0u; i < 4u; i++) {
    let m = m0 + ty + 16u * i;
    for (var j = 0u; j < 4u; j++) {
      let n = n0 + tx + 16u * j;
      if (m < p.M && n < p.N) {
        var v = acc[i][j];
        if (HAS_BIAS) { v += bias[n]; }
        let o = m * p.N + n;
        if (ACCUMULATE) { Y[o] += v; } else { Y[o] = v; }
      }
    }
  }
}
