// Dense matmul with f16 storage of the operands, f32 accumulation and f32 output, optionally batched:
//   c[b] = alpha * op(f32(a[b])) · op(f32(b[b]))  (+ c[b] when ACCUMULATE)
// Shapes (row-major, per batch entry b; entry b starts at b * strideA / strideB / strideC elements):
//   c (M, N) f32;  a (M, K), or (K, M) when TRANS_A, f16;  b (K, N), or (N, K) when TRANS_B, f16.
// Reference op: torch.matmul(a.float(), b.float()) with .T for the transposed variants, i.e. the
// product of the f16-rounded operands accumulated in f32 (not torch's f16 matmul, which may round
// partial sums to f16: training needs the f32 accumulator, as ONNX Runtime's WebGPU bnb4 kernels keep).
// Needs the `shader-f16` device feature; the host refuses to build it without one and matmulAuto
// falls back to f32 storage (shaders/matmul.wgsl).
// Version 1: shaders/matmul.wgsl's tiling (BM×BN tile, BK slices in workgroup memory, 4×4 outputs
// per thread) with the operands widened to f32 as they are staged, so the tiles, the inner loop and
// the summation order are those of the f32 kernel: on f16-representable inputs both kernels should
// agree to the last bit or nearly (a compiler may still contract differently). Halving global traffic is the gain; f16 workgroup tiles (half the
// workgroup memory, BK 32 at 8 KiB) and vec4<f16> loads are version 2.

enable f16;

override BM: u32 = 64;            // output rows per workgroup tile (a multiple of TM)
override BN: u32 = 64;            // output columns per workgroup tile (a multiple of TN)
override BK: u32 = 16;            // reduction depth staged per barrier pair
override TRANS_A: bool = false;   // a stored (K, M)
override TRANS_B: bool = false;   // b stored (N, K), i.e. X·Wᵀ as nn.Linear computes it
override ACCUMULATE: bool = false;

const TM = 4u;                    // output rows per thread
const TN = 4u;                    // output columns per thread (one vec4)
// Derived from the tile; not meant to be overridden on their own.
override WG_X: u32 = BN / TN;     // threads along n
override WG_Y: u32 = BM / TM;     // threads along m
override WG: u32 = WG_X * WG_Y;

struct Params {
  M: u32,
  N: u32,
  K: u32,
  batch: u32,
  strideA: u32,   // elements between batch entries of a (0 broadcasts one a over the batch)
  strideB: u32,
  strideC: u32,
  alpha: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> c: array<f32>;   // (batch, M, N)
@group(0) @binding(2) var<storage, read> a: array<f16>;         // (batch, M, K) or (batch, K, M)
@group(0) @binding(3) var<storage, read> b: array<f16>;         // (batch, K, N) or (batch, N, K)

// f32 tiles (f16 is widened on staging, exactly). k-major: for a fixed k, a thread reads its 4 rows
// of a and its 4 columns of b as one vec4 each, so the inner loop is 2 workgroup loads per 16 FMAs. BK·(BM+BN)·4 bytes = 8 KiB at the
// defaults, half the portable 16 KiB.
var<workgroup> As: array<vec4<f32>, BK * BM / 4>;   // As[k * BM/4 + m/4][m % 4] = op(a)[m, k]
var<workgroup> Bs: array<vec4<f32>, BK * BN / 4>;   // Bs[k * BN/4 + n/4][n % 4] = op(b)[k, n]

@compute @workgroup_size(WG_X, WG_Y)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_id) tid: vec3u, @builtin(local_invocation_index) lid: u32) {
  // The grid may be split over x and y (more than 65535 tiles); rebuild the linear tile id.
  let tilesN = (p.N + BN - 1u) / BN;
  let tilesM = (p.M + BM - 1u) / BM;
  let w = wid.x + wid.y * nwg.x;
  let bi = w / (tilesM * tilesN);
  let t = w % (tilesM * tilesN);
  let m0 = (t / tilesN) * BM;
  let n0 = (t % tilesN) * BN;
  // No early return: a workgroup past the last tile still walks the K loop and its barriers, it
  // just loads zeros and stores nothing.
  let live = bi < p.batch;
  let aBase = bi * p.strideA;
  let bBase = bi * p.strideB;
  let cBase = bi * p.strideC;

  var acc: array<vec4<f32>, TM>;
  for (var i = 0u; i < TM; i++) { acc[i] = vec4<f32>(0.0); }

  for (var k0 = 0u; k0 < p.K; k0 += BK) {
    // Stage op(a)[m0.., k0..] as BM×BK, 4 elements per invocation. Lanes run along m in both
    // layouts, so a wave's stores land on consecutive words of As (no bank conflict; version 1's
    // (M, K) staging put 16 lanes on one bank). A (K, M) a is read along m, its contiguous dimension;
    // for an (M, K) a each invocation reads 4 adjacent k of its row. (BK % 4 == 0.)
    for (var e = lid; e < BM * BK / 4u; e += WG) {
      let mm = e % BM;
      let m = m0 + mm;
      for (var q = 0u; q < 4u; q++) {
        var kk = 4u * (e / BM) + q;
        if (TRANS_A) { kk = e / BM + (BK / 4u) * q; }
        let k = k0 + kk;
        var v = 0.0;
        if (live && m < p.M && k < p.K) {
          if (TRANS_A) { v = f32(a[aBase + k * p.M + m]); } else { v = f32(a[aBase + m * p.K + k]); }
        }
        As[kk * (BM / 4u) + mm / 4u][mm % 4u] = v;
      }
    }
    // Stage op(b)[k0.., n0..] as BK×BN the same way: lanes along n; a (K, N) b read along n, an
    // (N, K) one 4 adjacent k per invocation.
    for (var e = lid; e < BK * BN / 4u; e += WG) {
      let nn = e % BN;
      let n = n0 + nn;
      for (var q = 0u; q < 4u; q++) {
        var kk = e / BN + (BK / 4u) * q;
        if (TRANS_B) { kk = 4u * (e / BN) + q; }
        let k = k0 + kk;
        var v = 0.0;
        if (live && n < p.N && k < p.K) {
          if (TRANS_B) { v = f32(b[bBase + n * p.K + k]); } else { v = f32(b[bBase + k * p.N + n]); }
        }
        Bs[kk * (BN / 4u) + nn / 4u][nn % 4u] = v;
      }
    }
    workgroupBarrier();

    // Outer product over the slice: rows tid.y*4.., columns tid.x*4... Zero padding past K makes the
    // ragged last slice exact without a bound on kk.
    for (var kk = 0u; kk < BK; kk++) {
      let av = As[kk * (BM / 4u) + tid.y];
      let bv = Bs[kk * (BN / 4u) + tid.x];
      for (var i = 0u; i < TM; i++) {
        acc[i] = fma(vec4<f32>(av[i]), bv, acc[i]);
      }
    }
    // The next iteration overwrites the tiles: everyone must be done reading them.
    workgroupBarrier();
  }

  if (live) {
    for (var i = 0u; i < TM; i++) {
      let m = m0 + tid.y * TM + i;
      if (m < p.M) {
        for (var j = 0u; j < TN; j++) {
          let n = n0 + tid.x * TN + j;
          if (n < p.N) {
            let idx = cBase + m * p.N + n;
            var v = p.alpha * acc[i][j];
            if (ACCUMULATE) { v += c[idx]; }
            c[idx] = v;
          }
        }
      }
    }
  }
}
