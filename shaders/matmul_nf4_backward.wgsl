// Fused NF4 matmul, input gradient of a frozen bitsandbytes Linear4bit (no dW: the base is frozen):
//   dX (M, K) (=|+=) dY (M, N) · dequant(W)
// W (N, K) is NF4-packed exactly as in matmul_nf4.wgsl (flat f = n*K + k, code in byte f/2 with the
// even element in the high nibble, little-endian u32 words, scale absmax[f / BS]; blocks may cross
// rows). Reference op: autograd of torch.nn.functional.linear(X, dequantize_4bit(W)) w.r.t. X.
// ACCUMULATE adds into dX: with LoRA, the adapter path's dX and the base path's meet in one buffer.
// Version 1 (portable f32): the mirror of the forward kernel. 64 (m) × 64 (k) output tile per
// workgroup, 256 invocations with 4×4 outputs strided by 16; the reduction runs over N, 16 rows of W
// per step. The W patch (16 rows × 64 k) is read along K, its contiguous direction, and dequantized
// straight into Ws[n][k] (no transpose needed in this direction); dY (64 × 16) is staged transposed.
// Workgroup memory: 2 × 16 × 65 f32 + LUT = 8.4 KiB. Ragged M, N, K are bounds-checked (zeros).

override ACCUMULATE: bool = false;
override BS: u32 = 64;        // NF4 blocksize

const TM = 64u;               // rows of dX per workgroup
const TK = 64u;               // columns of dX per workgroup
const TN = 16u;               // reduction step over N
const WG = 256u;
const S = 65u;                // padded stride

struct Params {
  M: u32,
  N: u32,
  K: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> dX: array<f32>;     // (M, K)
@group(0) @binding(2) var<storage, read> dY: array<f32>;           // (M, N)
@group(0) @binding(3) var<storage, read> Wq: array<u32>;           // (ceil(N*K / 8)) packed NF4 of W (N, K)
@group(0) @binding(4) var<storage, read> absmax: array<f32>;       // (ceil(N*K / BS))

const NF4 = array<u32, 16>(
  0xbf800000u, 0xbf3239b1u, 0xbf066b30u, 0xbeca32a0u, 0xbe91a24du, 0xbe3d353fu, 0xbdba7871u, 0x00000000u,
  0x3da2faffu, 0x3e24cae3u, 0x3e7c04ddu, 0x3ead033au, 0x3ee1a4b8u, 0x3f1007abu, 0x3f3913b3u, 0x3f800000u);

var<workgroup> lut: array<f32, 16>;
var<workgroup> dYs: array<f32, TN * S>;      // dYs[n * S + m]
var<workgroup> Ws: array<f32, TN * S>;       // Ws[n * S + k] = dequant(W)[n0 + n, k0 + k]

fn weight(f: u32) -> f32 {
  let shift = 8u * ((f >> 1u) & 3u) + select(4u, 0u, (f & 1u) == 1u);
  let code = (Wq[f >> 3u] >> shift) & 15u;
  return lut[code] * absmax[f / BS];
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let tilesK = (p.K + TK - 1u) / TK;
  let tile = wid.x + wid.y * nwg.x;
  // Tiles past the end get m0 >= M: zeros in, nothing out, all barriers kept.
  let m0 = (tile / tilesK) * TM;
  let k0 = (tile % tilesK) * TK;
  let tx = lid % 16u;
  let ty = lid / 16u;

  if (lid < 16u) { lut[lid] = bitcast<f32>(NF4[lid]); }
  workgroupBarrier();

  var acc: array<array<f32, 4>, 4>;
  for (var n0 = 0u; n0 < p.N; n0 += TN) {
    for (var r = 0u; r < 4u; r++) {
      let e = lid + r * WG;
      // dY: 64 rows × 16 n, neighbouring invocations along n (contiguous in dY).
      let dn = e % TN;
      let dm = e / TN;
      var g = 0.0;
      if (m0 + dm < p.M && n0 + dn < p.N) { g = dY[(m0 + dm) * p.N + n0 + dn]; }
      dYs[dn * S + dm] = g;
      // W: 16 rows × 64 k, neighbouring invocations along k (contiguous in the packed W).
      let wk = e % TK;
      let wn = e / TK;
      var wv = 0.0;
      if (n0 + wn < p.N && k0 + wk < p.K) { wv = weight((n0 + wn) * p.K + k0 + wk); }
      Ws[wn * S + wk] = wv;
    }
    workgroupBarrier();
    for (var n = 0u; n < TN; n++) {
      var a: array<f32, 4>;
      var b: array<f32, 4>;
      for (var i = 0u; i < 4u; i++) { a[i] = dYs[n * S + ty + 16u * i]; }
      for (var j = 0u; j < 4u; j++) { b[j] = Ws[n * S + tx + 16u * j]; }
      for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) { acc[i][j] = fma(a[i], b[j], acc[i][j]); }
      }
    }
    workgroupBarrier();
  }

  for (var i = 0u; i < 4u; i++) {
    let m = m0 + ty + 16u * i;
    for (var j = 0u; j < 4u; j++) {
      let k = k0 + tx + 16u * j;
      if (m < p.M && k < p.K) {
        let o = m * p.K + k;
        if (ACCUMULATE) { dX[o] += acc[i][j]; } else { dX[o] = acc[i][j]; }
      }
    }
  }
}
