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
// conflicts. Workgroup memory: 2 × 16 × 65 f32 + a 16-entry LUT = 8.4 KiB (< 16 KiB portable).
// Everything is bounds-checked (ragged M, N, K); out-of-range loads read 0. A later version can add
// `fit` variants without checks and BK = 64 (one absmax per row per step) when K % 64 == 0.

override ACCUMULATE: bool = false;
override HAS_BIAS: bool = false;
override BS: u32 = 64;        // NF4 blocksize

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
@group(0) @binding(4) var<storage, read> absmax: array<f32>;       // (ceil(N*K / BS))
@group(0) @binding(5) var<storage, read> bias: array<f32>;         // (N), read only when HAS_BIAS

const NF4 = array<u32, 16>(
  0xbf800000u, 0xbf3239b1u, 0xbf066b30u, 0xbeca32a0u, 0xbe91a24du, 0xbe3d353fu, 0xbdba7871u, 0x00000000u,
  0x3da2faffu, 0x3e24cae3u, 0x3e7c04ddu, 0x3ead033au, 0x3ee1a4b8u, 0x3f1007abu, 0x3f3913b3u, 0x3f800000u);

var<workgroup> lut: array<f32, 16>;          // codebook in workgroup memory: 16 banks, no spills
var<workgroup> Xs: array<f32, TK * S>;       // Xs[k * S + m]
var<workgroup> Ws: array<f32, TK * S>;       // Ws[k * S + n] = dequant(W)[n0 + n, k0 + k]

// dequant(W) at flat index f = n*K + k, read through the workgroup LUT.
fn weight(f: u32) -> f32 {
  let shift = 8u * ((f >> 1u) & 3u) + select(4u, 0u, (f & 1u) == 1u);
  let code = (Wq[f >> 3u] >> shift) & 15u;
  return lut[code] * absmax[f / BS];
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
