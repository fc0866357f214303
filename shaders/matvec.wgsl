// Decode-speed matrix-vector product, f32 storage and f32 accumulation:
//   y (M, N) (=|+=) alpha · x (M, K) · Wᵀ,   M = 1..4 rows (tokens), W (N, K) the nn.Linear weight.
// Reference op: torch.nn.functional.linear(x, W) * alpha; with ACCUMULATE torch.addmm(y, x, W.T,
// alpha=alpha). matmul() (src/kernels/matmul.ts) routes its NT calls with M <= 4 here.
// Why a kernel of its own: during generation every projection and the logits run one token at a
// time. matmul.wgsl's 64×64 tile would then compute 63 dead rows per live one, and its few
// workgroups (N/64) cannot keep the memory system busy. The product is bound by reading W once, so
// the whole design is about reading each weight exactly once, coalesced, from many workgroups.
// Version 2 (f32; the reduction takes subgroups where the device has them):
//   - a workgroup has GROUPS groups of WG_K invocations and computes GROUPS × COLS output columns
//     for all M rows; group g owns columns n0 + g·COLS + c;
//   - lane t of a group walks K with stride WG_K, so neighbouring lanes read neighbouring words of
//     one W row (coalesced); `main` reads vec4 (16 bytes per lane), `main_scalar` one f32;
//   - each x load is reused for COLS columns and each W load for M rows; partials stay in
//     registers (MR × COLS of them);
//   - each output's partials go to a padded row of workgroup memory and one invocation adds them
//     up in order: COLS · MR · GROUPS · (WG_K + 1) f32 = 8.1 KiB at 64 lanes, 9 KiB at 8 (the
//     portable limit is 16 KiB). WG_K >= COLS · MR keeps an invocation for every output of the sum.
//   - subgroup path (src/kernels/subgroups.ts picks it; `//#if subgroups` blocks): each subgroup
//     first adds its lanes' partials with subgroupAdd, so an output has WG_K / subgroup-size
//     partials in workgroup memory (2 on a 32-wide GPU) instead of WG_K (64). WGSL does not promise
//     that subgroups are runs of consecutive invocation indices, so the lanes are numbered by
//     (subgroup_id, subgroup_invocation_id) instead: when num_subgroups · subgroup_size == WG every
//     subgroup is full and that numbering is a bijection onto 0..WG-1, and a power-of-two subgroup
//     no wider than WG_K then lies inside one column group. Otherwise (never seen; SG_REDUCE =
//     false forces it in the tests) the kernel keeps the portable numbering and sum.
// `main` needs K % 4 == 0 (every W and x row then starts on a 16-byte boundary; binding offsets
// are 256-aligned); `main_scalar` takes any K. The two entry points declare bindings 2 and 3 with
// different element types: each entry point's interface holds one variable per binding, which WGSL
// allows, and the host picks the entry.

//#if subgroups
enable subgroups;
//#endif

const MR = 4u;                    // most rows of x per dispatch (the host checks M <= MR)
const COLS = 2u;                  // output columns per group (x reuse in registers)
override WG_K: u32 = 64;          // lanes along K per column group: 8..64, sized to K by the host
override GROUPS: u32 = 4;         // column groups per workgroup
override WG: u32 = WG_K * GROUPS; // derived; not meant to be overridden on its own
override ACCUMULATE: bool = false;
override SG_REDUCE: bool = true;  // subgroup path: false keeps the portable lane numbering and sum

struct Params {
  M: u32,
  N: u32,
  K: u32,
  alpha: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;        // (M, N)
@group(0) @binding(2) var<storage, read> x: array<f32>;              // (M, K), main_scalar
@group(0) @binding(3) var<storage, read> W: array<f32>;              // (N, K), main_scalar
@group(0) @binding(2) var<storage, read> x4: array<vec4<f32>>;       // (M, K/4), main
@group(0) @binding(3) var<storage, read> W4: array<vec4<f32>>;       // (N, K/4), main

//#include gemv_reduce

// Sum the partials of every (column, row) and store (gemv_reduce's storePartials and redSum: one
// invocation per output adds its row of partials in order). Called from uniform control flow by
// every invocation: it contains a barrier.
fn reduceAndStore(id: Ids, wg: Wg, n0: u32, acc: array<array<f32, MR>, COLS>) {
  storePartials(id, wg, acc);
  let lid = id.lid;
  let parts = partsPerOutput(wg);
  if (lid < COLS * MR * GROUPS) {
    let m = (lid / GROUPS) % MR;
    let n = n0 + (lid % GROUPS) * COLS + lid / (GROUPS * MR);
    if (m < p.M && n < p.N) {
      let s = redSum(lid, parts);
      let o = m * p.N + n;
      var v = p.alpha * s;
      if (ACCUMULATE) { v += y[o]; }
      y[o] = v;
    }
  }
}

@compute @workgroup_size(WG)
fn main(id: Ids, wg: Wg) {
  // The grid may be split over x and y (N / (GROUPS·COLS) > 65535); rebuild the linear id. A
  // workgroup past the end has n0 >= N: it loads nothing and stores nothing, but still reaches
  // every barrier.
  let n0 = (wg.wid.x + wg.wid.y * wg.nwg.x) * (GROUPS * COLS);
  let gt = lane(id, wg);
  let g = gt.x;
  let t = gt.y;
  let K4 = p.K / 4u;
  var acc: array<array<f32, MR>, COLS>;
  for (var k4 = t; k4 < K4; k4 += WG_K) {
    var xv: array<vec4<f32>, MR>;
    for (var m = 0u; m < MR; m++) {
      if (m < p.M) { xv[m] = x4[m * K4 + k4]; }
    }
    for (var c = 0u; c < COLS; c++) {
      let n = n0 + g * COLS + c;
      if (n < p.N) {
        let w = W4[n * K4 + k4];
        for (var m = 0u; m < MR; m++) { acc[c][m] += dot(xv[m], w); }
      }
    }
  }
  reduceAndStore(id, wg, n0, acc);
}

@compute @workgroup_size(WG)
fn main_scalar(id: Ids, wg: Wg) {
  // Same walk as `main`, one element per lane per step: any K, 4-byte loads.
  let n0 = (wg.wid.x + wg.wid.y * wg.nwg.x) * (GROUPS * COLS);
  let gt = lane(id, wg);
  let g = gt.x;
  let t = gt.y;
  var acc: array<array<f32, MR>, COLS>;
  for (var k = t; k < p.K; k += WG_K) {
    var xv: array<f32, MR>;
    for (var m = 0u; m < MR; m++) {
      if (m < p.M) { xv[m] = x[m * p.K + k]; }
    }
    for (var c = 0u; c < COLS; c++) {
      let n = n0 + g * COLS + c;
      if (n < p.N) {
        let w = W[n * p.K + k];
        for (var m = 0u; m < MR; m++) { acc[c][m] = fma(xv[m], w, acc[c][m]); }
      }
    }
  }
  reduceAndStore(id, wg, n0, acc);
}
