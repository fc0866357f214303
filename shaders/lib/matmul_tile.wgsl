// The tiled dense matmul (shaders/matmul.wgsl's header describes it): overrides, Params, the output
// binding, the workgroup tiles and the `main` entry, for matmul, matmul_f16 and matmul_packed_f16,
// which differ only in how an element of a and b is read: `//#include matmul_tile` (src/gpu/wgsl-lib.ts
// says how). The including shader declares bindings 2 (a) and 3 (b) and
//   fn aAt(e: u32) -> f32, fn bAt(e: u32) -> f32   element e of a, of b, widened to f32.

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
  kSlice: u32,    // split-K: entry bi sums k in [bi·kSlice, (bi+1)·kSlice) (0: all of K)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> c: array<f32>;   // (batch, M, N)

// k-major tiles: for a fixed k, a thread reads its 4 rows of a and its 4 columns of b as one vec4
// each, so the inner loop is 2 workgroup loads per 16 FMAs. BK·(BM+BN)·4 bytes = 8 KiB at the
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

  // Split-K (kSlice > 0, a multiple of BK): the batch entries are slices of one reduction over the
  // same a and b (the host passes strides 0 for them), each into its own (M, N) of c.
  let kBegin = bi * p.kSlice;
  let kEnd = select(p.K, min(p.K, kBegin + p.kSlice), p.kSlice > 0u);

  var acc: array<vec4<f32>, TM>;
  for (var i = 0u; i < TM; i++) { acc[i] = vec4<f32>(0.0); }

  for (var k0 = kBegin; k0 < kEnd; k0 += BK) {
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
        if (live && m < p.M && k < kEnd) {
          if (TRANS_A) { v = aAt(aBase + k * p.M + m); } else { v = aAt(aBase + m * p.K + k); }
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
        if (live && n < p.N && k < kEnd) {
          if (TRANS_B) { v = bAt(bBase + n * p.K + k); } else { v = bAt(bBase + k * p.N + n); }
        }
        Bs[kk * (BN / 4u) + nn / 4u][nn % 4u] = v;
      }
    }
    workgroupBarrier();

    // Outer product over the slice: rows tid.y*4.., columns tid.x*4... Zero padding past K (kEnd)
    // makes the ragged last slice exact without a bound on kk.
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
