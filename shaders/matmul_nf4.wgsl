// Fused NF4 matmul, forward of a frozen bitsandbytes Linear4bit:
//   Y (M, N) (=|+=) X (M, K) · dequant(W)ᵀ (+ bias (N))
// W (N, K) is the nn.Linear weight [out, in], NF4-packed as bitsandbytes does it (docs/nf4.md): flat
// element f = n*K + k has its code in byte f/2 (even f in the high nibble) of little-endian u32 words,
// and its scale in absmax[f / BS]. When K % BS != 0 a block crosses rows, which indexing absmax by the
// flat index handles for free. Reference op: bitsandbytes gemm_4bit (default backend) =
// torch.nn.functional.linear(X, dequantize_4bit(W), bias).
// ACCUMULATE adds into Y (Y += X·Wᵀ + bias); HAS_BIAS adds bias[n] (Qwen2 q/k/v projections).
//
// Layout (version 3, docs/kernels.md): a 64×64 output tile per workgroup of 128 invocations, each
// keeping an 8×4 register tile of adjacent outputs (rows 8ty.., columns 4tx..). K advances TK (16
// or 32, a pipeline override the host picks by the device's workgroup memory) at a time; per step
// the workgroup stages X (64×TK) and the W patch (64 rows × TK), DEQUANTIZED, in workgroup memory,
// k-major, as vec4 of 4 adjacent rows. Per k the inner loop reads 2 vec4 of X and 1 of W for 32
// FMAs (version 2: 2 vec4 per 16 FMAs with 4×4 tiles, version 1: 8 scalars). Staging: invocation i
// takes row i % 64 and, per pass, 4 adjacent k (TK / 8 passes), so the 32 lanes of a wave store 32
// consecutive words (no bank conflict, no pad); W is read as the half code word holding those 4
// codes, decoded with one block scale (BS % 4 == 0 keeps 4 aligned codes in one block) instead of
// one word load and one scale per code.
// 64×64 rather than larger tiles: a 1B model's q/k/v at 512 tokens then still has 256+ workgroups;
// the larger register tile comes from fewer invocations per tile, not from a larger tile.
// FIT (M % 64 == 0, N % 64 == 0, K % TK == 0) drops every bounds check; otherwise ragged M, N, K
// read 0 out of range, and K % 4 != 0 (rows not starting on a code-word half) decodes code by code.
// Every output sums the same products in the same k order with fma as versions 1 and 2, as either
// K step (a step past K adds fma(0, w, acc) = acc: acc starts at +0 and never becomes -0) and as
// matmul_nf4_fused.wgsl, so results are bit-identical between them.
// Workgroup memory: 2 × TK × 64 f32 + the 16-entry LUT + the 256-entry dynamic map (filled only
// under DQ) = 9.1 KiB at TK = 16 (< 16 KiB portable), 17.1 KiB at TK = 32.
// DQ: absmax is bitsandbytes' double quantization (8-bit codes, an f32 absmax2 per 256 blocks, the
// mean offset; layout in src/quant/nf4.ts packDoubleQuant), decoded per block by blockScale.

override ACCUMULATE: bool = false;
override HAS_BIAS: bool = false;
override BS: u32 = 64;        // NF4 blocksize
override DQ: bool = false;    // absmax holds double-quantized words, not f32 (see blockScale)
override FIT: bool = false;   // M % 64 == 0, N % 64 == 0, K % TK == 0: no bounds checks
override TK: u32 = 16u;       // reduction step: 16 or 32 (the host's choice, by workgroup memory)

const TM = 64u;               // rows of Y per workgroup
const TN = 64u;               // columns of Y per workgroup
const WG = 128u;              // 16 × 8 invocations, each 8 rows × 4 columns of Y
const Q = 16u;                // vec4 per k row of a staged tile (64 rows / 4)

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

//#include nf4_tables
//#include nf4_lut
//#include nf4_block_scale

var<workgroup> Xs: array<vec4<f32>, TK * Q>;   // Xs[k * Q + r / 4][r % 4] = X[m0 + r, k0 + k]
var<workgroup> Ws: array<vec4<f32>, TK * Q>;   // Ws[k * Q + n / 4][n % 4] = dequant(W)[n0 + n, k0 + k]

fn blocks() -> u32 { return (p.N * p.K + BS - 1u) / BS; }

// dequant(W) at flat index f, one code (rows not aligned to a code-word half).
fn weight(f: u32) -> f32 {
  let shift = 8u * ((f >> 1u) & 3u) + select(4u, 0u, (f & 1u) == 1u);
  let code = (Wq[f >> 3u] >> shift) & 15u;
  return lut[code] * blockScale(f / BS, blocks());
}

// dequant(W) at flat f .. f + 3 for f % 4 == 0: bytes 2h and 2h + 1 of one code word (h = f / 4 % 2),
// high nibble first, all four in one NF4 block.
fn weights4(f: u32) -> vec4<f32> {
  let bytes = Wq[f >> 3u] >> (16u * ((f >> 2u) & 1u));
  let c = vec4<u32>(bytes >> 4u, bytes, bytes >> 12u, bytes >> 8u) & vec4<u32>(15u);
  return vec4<f32>(lut[c.x], lut[c.y], lut[c.z], lut[c.w]) * blockScale(f / BS, blocks());
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let tilesN = (p.N + TN - 1u) / TN;
  let tile = wid.x + wid.y * nwg.x;
  // A tile past the end (2-D grid rounding) gets m0 >= M: it stores nothing but still takes part in
  // every barrier (its loads read zeros, or under FIT whatever WebGPU's bounds-clamped reads give).
  let m0 = (tile / tilesN) * TM;
  let n0 = (tile % tilesN) * TN;
  let tx = lid % 16u;         // columns 4tx .. 4tx + 3
  let ty = lid / 16u;         // rows 8ty .. 8ty + 7
  // Staging: row r of the tiles; pass s covers k = 4(kq + 2s) .. + 3 of the step.
  let r = lid % 64u;
  let kq = lid / 64u;
  let rv = r / 4u;
  let rc = r % 4u;
  let gm = m0 + r;
  let gn = n0 + r;
  let aligned = FIT || (p.K & 3u) == 0u;

  loadTables(lid);

  var acc: array<vec4<f32>, 8>;
  for (var k0 = 0u; k0 < p.K; k0 += TK) {
    for (var s = 0u; s < TK / 8u; s++) {
      let g = kq + 2u * s;      // group of 4 k in the step
      let kb = k0 + 4u * g;
      var xv = vec4<f32>(0.0);
      var wv = vec4<f32>(0.0);
      if (FIT) {
        let xo = gm * p.K + kb;
        xv = vec4<f32>(X[xo], X[xo + 1u], X[xo + 2u], X[xo + 3u]);
        wv = weights4(gn * p.K + kb);
      } else {
        if (gm < p.M) {
          for (var c = 0u; c < 4u; c++) {
            if (kb + c < p.K) { xv[c] = X[gm * p.K + kb + c]; }
          }
        }
        if (gn < p.N && kb < p.K) {
          if (aligned) {
            wv = weights4(gn * p.K + kb);   // K % 4 == 0: kb < K puts all four inside the row
          } else {
            for (var c = 0u; c < 4u; c++) {
              if (kb + c < p.K) { wv[c] = weight(gn * p.K + kb + c); }
            }
          }
        }
      }
      for (var c = 0u; c < 4u; c++) {
        Xs[(4u * g + c) * Q + rv][rc] = xv[c];
        Ws[(4u * g + c) * Q + rv][rc] = wv[c];
      }
    }
    workgroupBarrier();
    for (var k = 0u; k < TK; k++) {
      let a0 = Xs[k * Q + 2u * ty];        // rows 8ty .. 8ty + 3
      let a1 = Xs[k * Q + 2u * ty + 1u];   // rows 8ty + 4 .. 8ty + 7
      let b = Ws[k * Q + tx];
      for (var i = 0u; i < 4u; i++) {
        acc[i] = fma(vec4<f32>(a0[i]), b, acc[i]);
        acc[i + 4u] = fma(vec4<f32>(a1[i]), b, acc[i + 4u]);
      }
    }
    workgroupBarrier();
  }

  for (var i = 0u; i < 8u; i++) {
    let m = m0 + 8u * ty + i;
    for (var j = 0u; j < 4u; j++) {
      let n = n0 + 4u * tx + j;
      if (m < p.M && (FIT || n < p.N)) {
        var v = acc[i][j];
        if (HAS_BIAS) { v += bias[n]; }
        let o = m * p.N + n;
        if (ACCUMULATE) { Y[o] += v; } else { Y[o] = v; }
      }
    }
  }
}
