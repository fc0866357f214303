// Decode-speed NF4 matrix-vector product, the M = 1..4 form of matmul_nf4.wgsl:
//   Y (M, N) (=|+=) X (M, K) · dequant(W)ᵀ (+ bias (N)),   M = 1..4 rows (tokens).
// W (N, K) is the nn.Linear weight [out, in], NF4-packed as bitsandbytes does it (docs/nf4.md): flat
// element f = n*K + k has its code in byte f/2 (even f in the high nibble) of little-endian u32 words
// and its scale in absmax[f / BS]; a block crosses rows when K % BS != 0. Reference op: bitsandbytes
// gemv_4bit = torch.nn.functional.linear(X, dequantize_4bit(W), bias). matmulNf4()
// (src/kernels/matmul_nf4.ts) routes M <= 4 here.
// Why a kernel of its own: one token reads 0.56 bytes of weight per 2 FLOPs, so decode is bound by
// reading W once; matmul_nf4's 64×64 tile would decode every weight for 64 rows of which one is live.
// Version 2 (f32; the reduction takes subgroups where the device has them):
//   - a workgroup has GROUPS groups of WG_K invocations and computes GROUPS × COLS output columns
//     for all M rows; group g owns columns n0 + g·COLS + c;
//   - `main` (K % 32 == 0 and BS % 32 == 0): lane t reads one vec4<u32> = 32 codes = half a
//     64-block of a W row per step, chunks t, t + WG_K, ... (neighbouring lanes, neighbouring 16
//     bytes: coalesced). A 32-aligned run of 32 codes lies inside one block, so one absmax per
//     load, applied once to the 32-term dot product;
//   - `main_scalar` (any K, any BS): lane t takes elements t, t + WG_K, ... of the row, one code each;
//   - each x load is reused for COLS columns and each decoded weight for M rows;
//   - each output's partials go to a padded row of workgroup memory and one invocation adds them
//     up in order: COLS · MR · GROUPS · (WG_K + 1) f32 = 8.1 KiB at 64 lanes, 9 KiB at 8, plus the
//     LUT and the 1 KiB dynamic map (the portable limit is 16 KiB). WG_K >= COLS · MR keeps an
//     invocation for every output;
//   - subgroup path: each subgroup pre-sums its lanes with subgroupAdd (WG_K / subgroup-size
//     partials per output), lanes numbered by (subgroup_id, subgroup_invocation_id) where the
//     subgroups tile the workgroup; as matvec.wgsl, whose header says why that is safe;
//   - DQ: double-quantized absmax as in matmul_nf4.wgsl (blockScale, lib/nf4_block_scale.wgsl),
//     one decode per scale read.
// The two entry points declare bindings 2 and 3 with different element types; each entry point's
// interface holds one variable per binding, which WGSL allows, and the host picks the entry.
// A byte → (even, odd) LUT is the obvious next experiment.

//#if subgroups
enable subgroups;
//#endif

const MR = 4u;                    // most rows of X per dispatch (the host checks M <= MR)
const COLS = 2u;                  // output columns per group (x reuse in registers)
override WG_K: u32 = 64;          // lanes along K per column group: 8..64, sized to K by the host
override GROUPS: u32 = 4;         // column groups per workgroup
override WG: u32 = WG_K * GROUPS; // derived; not meant to be overridden on its own
override ACCUMULATE: bool = false;
override HAS_BIAS: bool = false;
override BS: u32 = 64;            // NF4 blocksize
override DQ: bool = false;        // absmax holds double-quantized words, not f32 (see blockScale)
override SG_REDUCE: bool = true;  // subgroup path: false keeps the portable lane numbering and sum

struct Params {
  M: u32,
  N: u32,
  K: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> Y: array<f32>;      // (M, N)
@group(0) @binding(2) var<storage, read> X: array<f32>;            // (M, K), main_scalar
@group(0) @binding(3) var<storage, read> Wq: array<u32>;           // (ceil(N*K / 8)), main_scalar
@group(0) @binding(2) var<storage, read> X4: array<vec4<f32>>;     // (M, K/4), main
@group(0) @binding(3) var<storage, read> Wq4: array<vec4<u32>>;    // (N*K / 32), main
@group(0) @binding(4) var<storage, read> absmax: array<u32>;       // (ceil(N*K / BS)) f32 bits, or DQ words
@group(0) @binding(5) var<storage, read> bias: array<f32>;         // (N), read only when HAS_BIAS

//#include nf4_tables
//#include nf4_lut
//#include nf4_block_scale
//#include gemv_reduce

// Sum the partials of every (column, row), add the bias and store (as matvec.wgsl, through
// gemv_reduce). Called from uniform control flow by every invocation: it contains a barrier.
fn reduceAndStore(id: Ids, wg: Wg, n0: u32, acc: array<array<f32, MR>, COLS>) {
  storePartials(id, wg, acc);
  let lid = id.lid;
  let parts = partsPerOutput(wg);
  if (lid < COLS * MR * GROUPS) {
    let m = (lid / GROUPS) % MR;
    let n = n0 + (lid % GROUPS) * COLS + lid / (GROUPS * MR);
    if (m < p.M && n < p.N) {
      var v = redSum(lid, parts);
      if (HAS_BIAS) { v += bias[n]; }
      let o = m * p.N + n;
      if (ACCUMULATE) { Y[o] += v; } else { Y[o] = v; }
    }
  }
}

@compute @workgroup_size(WG)
fn main(id: Ids, wg: Wg) {
  loadTables(id.lid);
  // The grid may be split over x and y (N / (GROUPS·COLS) > 65535); rebuild the linear id. A
  // workgroup past the end has n0 >= N: it loads nothing and stores nothing, but still reaches
  // every barrier.
  let n0 = (wg.wid.x + wg.wid.y * wg.nwg.x) * (GROUPS * COLS);
  let gt = lane(id, wg);
  let g = gt.x;
  let t = gt.y;
  let K4 = p.K / 4u;     // vec4 of x per row
  let K32 = p.K / 32u;   // vec4<u32> of codes per row (K % 32 == 0: rows start on a vec4 boundary)
  var acc: array<array<f32, MR>, COLS>;
  for (var j = t; j < K32; j += WG_K) {
    // The codes and scale of this 32-element chunk for each of the group's columns.
    var codes: array<vec4<u32>, COLS>;
    var scale: array<f32, COLS>;
    for (var c = 0u; c < COLS; c++) {
      let n = n0 + g * COLS + c;
      if (n < p.N) {
        codes[c] = Wq4[n * K32 + j];
        scale[c] = blockScale((n * p.K + 32u * j) / BS, (p.N * p.K + BS - 1u) / BS);
      }
    }
    var part: array<array<f32, MR>, COLS>;
    for (var i = 0u; i < 4u; i++) {
      // Elements 32j + 8i .. 32j + 8i + 7 of each x row: two vec4, shared by the COLS columns.
      var xa: array<vec4<f32>, MR>;
      var xb: array<vec4<f32>, MR>;
      for (var m = 0u; m < MR; m++) {
        if (m < p.M) {
          xa[m] = X4[m * K4 + 8u * j + 2u * i];
          xb[m] = X4[m * K4 + 8u * j + 2u * i + 1u];
        }
      }
      for (var c = 0u; c < COLS; c++) {
        let wa = decodeLo(codes[c][i]);
        let wb = decodeHi(codes[c][i]);
        for (var m = 0u; m < MR; m++) { part[c][m] += dot(xa[m], wa) + dot(xb[m], wb); }
      }
    }
    // Columns past N decoded zero-initialised codes (code 0 = -1.0) against scale 0: they add 0.
    for (var c = 0u; c < COLS; c++) {
      for (var m = 0u; m < MR; m++) { acc[c][m] = fma(scale[c], part[c][m], acc[c][m]); }
    }
  }
  reduceAndStore(id, wg, n0, acc);
}

// dequant(W) at flat index f = n*K + k, read through the workgroup LUT.
fn weight(f: u32) -> f32 {
  let shift = 8u * ((f >> 1u) & 3u) + select(4u, 0u, (f & 1u) == 1u);
  let code = (Wq[f >> 3u] >> shift) & 15u;
  return lut[code] * blockScale(f / BS, (p.N * p.K + BS - 1u) / BS);
}

@compute @workgroup_size(WG)
fn main_scalar(id: Ids, wg: Wg) {
  // Same walk as `main`, one element per lane per step: any K, any blocksize (a block may start
  // anywhere in a row), 4-byte loads. Real checkpoints (K a multiple of 64) take `main`.
  loadTables(id.lid);
  let n0 = (wg.wid.x + wg.wid.y * wg.nwg.x) * (GROUPS * COLS);
  let gt = lane(id, wg);
  let g = gt.x;
  let t = gt.y;
  var acc: array<array<f32, MR>, COLS>;
  for (var k = t; k < p.K; k += WG_K) {
    var xv: array<f32, MR>;
    for (var m = 0u; m < MR; m++) {
      if (m < p.M) { xv[m] = X[m * p.K + k]; }
    }
    for (var c = 0u; c < COLS; c++) {
      let n = n0 + g * COLS + c;
      if (n < p.N) {
        let w = weight(n * p.K + k);
        for (var m = 0u; m < MR; m++) { acc[c][m] = fma(xv[m], w, acc[c][m]); }
      }
    }
  }
  reduceAndStore(id, wg, n0, acc);
}
