// LoRA backward (autograd of PEFT `lora.Linear.forward`), given dY (M, N) and the forward's U (M, R):
//   dU (M, R)  = scale · dY · B                          entry `dU_main`  (reduction over the N outputs)
//   dB (N, R) (+)= scale · dYᵀ · U                       entry `dB_main`  (reduction over the M tokens)
//   dA (R, K) (+)= dUᵀ · dropout(x)                      entry `dA_main`  (reduction over the M tokens)
//   dX (M, K) += mask/(1-p) ⊙ (dU · A)                   entry `dX_main`  (onto the base layer's dX)
// Shapes: x (M, K), A (R, K), B (N, R), row-major. The host runs the four entries in this order.
// Reference op: torch autograd of linear(linear(dropout(x), A), B) * scale; goldens in
// scripts/goldens/lora.py. The dropout mask is regenerated from (seed, flat index m*K + k) with the
// same PCG hash as lora_forward.wgsl, so nothing of size (M, K) was saved.
// ACCUMULATE adds into dA and dB (gradient accumulation over micro-batches); dX always accumulates.
// Version 2: the register-tiled matmul body of lora_forward.wgsl (WX x WY threads, TM x TN outputs each,
// BK-long reduction chunks in workgroup memory, zero-filled ragged edges), with split-K for the three
// rank-R products. Their outputs are narrow (R columns), so one workgroup per 64 x 16 output tile
// gives only ceil(rows/64) workgroups (8 for dU at M = 512) against a GPU of 100+ cores. The host
// (lora_backward.ts, loraSplits) cuts the reduction into sU, sB, sA slices of whole BK chunks; each
// workgroup reduces one (tile, slice) and writes its partial sum to the scratch buffer `work`, and a
// later dispatch adds the slices in slice order (deterministic, no atomics):
//   dU partials -> dU  by extra workgroups of the dB dispatch (dA and dX read dU after it),
//   dB, dA partials -> dB, dA  by extra workgroups of the dX dispatch (the last one),
// so split-K costs no dispatch. A product with one slice writes its result directly, as version 1 did.
// work: [dU (M·R) | region 1: dU partials (sU·M·R), later dA partials (sA·R·K) | dB partials (sB·N·R)].
// Groups: up to three adapters whose projections share x (q/k/v, gate/up) go through each stage in
// one dispatch (part j: its dY_j, U_j, N_j, seed, the offsets of its A/dA and B/dB in the bound LoRA
// parameter and gradient buffers, and its own region of `work`). The workgroups are dealt to the
// parts in turn, each running exactly the one-adapter stage's work, so every result is bit-identical
// to one dispatch per adapter; dX's tiles run the parts in order onto dX (dX + part 0, then + part 1).
// All math in f32.
override WX: u32 = 16;
override WY: u32 = 16;
override BK: u32 = 16;
override ACCUMULATE: bool = false;
const TM: u32 = 4;
const TN: u32 = 4;

// One adapter of the group. Offsets are in floats.
struct Part {
  N: u32,
  seedIndex: u32,      // the dropout seed is seeds[seedIndex]: seeds change every step, Params never
  sU: u32,             // slices of dU's reduction (over N), each chunkU long (a multiple of BK)
  chunkU: u32,
  sB: u32,             // slices of dB's reduction (over M)
  chunkB: u32,
  sA: u32,             // slices of dA's reduction (over M)
  chunkA: u32,
  base: u32,           // where this part's dU starts in `work`
  off1: u32,           // where its region 1 starts (dU partials, later dA partials)
  off2: u32,           // where its dB partials start
  oA: u32,             // its A in L and dA in G
  oB: u32,             // its B in L and dB in G
  pad0: u32,
  pad1: u32,
  pad2: u32,
}

struct Params {
  M: u32,
  K: u32,
  R: u32,
  parts: u32,
  keepThreshold: u32,
  pad: u32,
  invKeep: f32,
  scale: f32,
  part: array<Part, 3>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> dX: array<f32>;  // (M, K)  +=
@group(0) @binding(2) var<storage, read_write> G: array<f32>;   // the LoRA gradients: dA_j (R, K), dB_j (N_j, R)
@group(0) @binding(3) var<storage, read_write> work: array<f32>; // per part: dU (M, R) and split-K partials (header)
@group(0) @binding(4) var<storage, read> dY: array<f32>;        // part 0's (M, N_0)
@group(0) @binding(5) var<storage, read> x: array<f32>;         // (M, K)
@group(0) @binding(6) var<storage, read> L: array<f32>;         // the LoRA parameters: A_j (R, K), B_j (N_j, R)
@group(0) @binding(7) var<storage, read> U: array<f32>;         // part 0's (M, R), saved by the forward
@group(0) @binding(8) var<storage, read> seeds: array<u32>;     // per-step dropout seeds (dA, dX only)
@group(0) @binding(9) var<storage, read> dY1: array<f32>;       // parts 1 and 2 (absent parts repeat part 0's)
@group(0) @binding(10) var<storage, read> dY2: array<f32>;
@group(0) @binding(11) var<storage, read> U1: array<f32>;
@group(0) @binding(12) var<storage, read> U2: array<f32>;

var<workgroup> Ls: array<f32, BK * WY * TM>;
var<workgroup> Rs: array<f32, BK * WX * TN>;

fn dYJ(j: u32, i: u32) -> f32 {
  if (j == 0u) { return dY[i]; }
  if (j == 1u) { return dY1[i]; }
  return dY2[i];
}
fn UJ(j: u32, i: u32) -> f32 {
  if (j == 0u) { return U[i]; }
  if (j == 1u) { return U1[i]; }
  return U2[i];
}

// Identical to lora_forward.wgsl.
fn pcg(v: u32) -> u32 {
  let state = v * 747796405u + 2891336453u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}

fn keep(i: u32, seedHash: u32) -> bool {
  return pcg(i ^ seedHash) >= p.keepThreshold;
}

fn mma(tx: u32, ty: u32, acc: ptr<function, array<f32, TM * TN>>) {
  let BP = WY * TM;
  let BQ = WX * TN;
  for (var s = 0u; s < BK; s++) {
    var a: array<f32, TM>;
    var b: array<f32, TN>;
    for (var i = 0u; i < TM; i++) { a[i] = Ls[s * BP + ty + i * WY]; }
    for (var j = 0u; j < TN; j++) { b[j] = Rs[s * BQ + tx + j * WX]; }
    for (var i = 0u; i < TM; i++) {
      for (var j = 0u; j < TN; j++) { (*acc)[i * TN + j] = fma(a[i], b[j], (*acc)[i * TN + j]); }
    }
  }
}

fn linear_id(wid: vec3u, nwg: vec3u) -> u32 {
  return wid.x + wid.y * nwg.x;
}

// Output tiles of a (rows, cols) result.
fn tile_count(rows: u32, cols: u32) -> u32 {
  return ((rows + WY * TM - 1u) / (WY * TM)) * ((cols + WX * TN - 1u) / (WX * TN));
}

// Tile t's (first row, first column), for `cols` output columns.
fn tile_origin(t: u32, cols: u32) -> vec2u {
  let tilesQ = (cols + WX * TN - 1u) / (WX * TN);
  return vec2u((t / tilesQ) * (WY * TM), (t % tilesQ) * (WX * TN));
}

// Workgroup w of a split product with `tiles` output tiles: (tile, slice); the slice is past the
// last when w belongs to the dispatch's fused reduction instead.
fn tile_slice(w: u32, tiles: u32) -> vec2u {
  return vec2u(w % tiles, w / tiles);
}

// Workgroups of part j in each stage's dispatch (the host computes the same, lora_backward.ts).
fn wgsU(j: u32) -> u32 {
  return tile_count(p.M, p.R) * p.part[j].sU;
}
fn wgsB(j: u32) -> u32 {
  let MR = p.M * p.R;
  let reduceU = select(0u, (MR + WX * WY - 1u) / (WX * WY), p.part[j].sU > 1u);
  return tile_count(p.part[j].N, p.R) * p.part[j].sB + reduceU;
}
fn wgsA(j: u32) -> u32 {
  return tile_count(p.K, p.R) * p.part[j].sA;
}
fn wgsReduce(j: u32) -> u32 {
  let pt = p.part[j];
  let n = select(0u, pt.N * p.R, pt.sB > 1u) + select(0u, p.R * p.K, pt.sA > 1u);
  return (n + WX * WY - 1u) / (WX * WY);
}

// dU[m, r] = scale * sum_n dY[m, n] * B[n, r]. Rows m, columns r, reduction n (slice `sl` of sU).
@compute @workgroup_size(WX, WY)
fn dU_main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
           @builtin(local_invocation_id) lid3: vec3u, @builtin(local_invocation_index) lid: u32) {
  let BP = WY * TM;
  let BQ = WX * TN;
  var w = linear_id(wid, nwg);
  var j = 0u;
  for (; j < p.parts; j++) {
    if (w < wgsU(j)) { break; }
    w -= wgsU(j);
  }
  if (j >= p.parts) { return; }
  let pt = p.part[j];
  let ts = tile_slice(w, tile_count(p.M, p.R));
  let o = tile_origin(ts.x, p.R);
  let n1 = min(pt.N, (ts.y + 1u) * pt.chunkU);
  var acc: array<f32, TM * TN>;
  for (var n0 = ts.y * pt.chunkU; n0 < n1; n0 += BK) {
    for (var e = lid; e < BK * BP; e += WX * WY) {   // dY is contiguous along n
      let s = e % BK;
      let m = o.x + e / BK;
      let n = n0 + s;
      var v = 0.0;
      if (m < p.M && n < n1) { v = dYJ(j, m * pt.N + n); }
      Ls[s * BP + e / BK] = v;
    }
    for (var e = lid; e < BK * BQ; e += WX * WY) {   // B is contiguous along r
      let c = e % BQ;
      let s = e / BQ;
      let r = o.y + c;
      let n = n0 + s;
      var v = 0.0;
      if (r < p.R && n < n1) { v = L[pt.oB + n * p.R + r]; }
      Rs[s * BQ + c] = v;
    }
    workgroupBarrier();
    mma(lid3.x, lid3.y, &acc);
    workgroupBarrier();
  }
  let MR = p.M * p.R;
  for (var i = 0u; i < TM; i++) {
    for (var jj = 0u; jj < TN; jj++) {
      let m = o.x + lid3.y + i * WY;
      let r = o.y + lid3.x + jj * WX;
      if (m < p.M && r < p.R) {
        if (pt.sU == 1u) { work[pt.base + m * p.R + r] = p.scale * acc[i * TN + jj]; }
        else { work[pt.off1 + ts.y * MR + m * p.R + r] = acc[i * TN + jj]; }
      }
    }
  }
}

// dB[n, r] (+)= scale * sum_m dY[m, n] * U[m, r]. Rows n, columns r, reduction m (slice of sB).
// The workgroups past the last (tile, slice) add up dU's partials into dU, one element per thread.
@compute @workgroup_size(WX, WY)
fn dB_main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
           @builtin(local_invocation_id) lid3: vec3u, @builtin(local_invocation_index) lid: u32) {
  let BP = WY * TM;
  let BQ = WX * TN;
  var w = linear_id(wid, nwg);
  var j = 0u;
  for (; j < p.parts; j++) {
    if (w < wgsB(j)) { break; }
    w -= wgsB(j);
  }
  if (j >= p.parts) { return; }
  let pt = p.part[j];
  let tiles = tile_count(pt.N, p.R);
  let ts = tile_slice(w, tiles);
  if (ts.y >= pt.sB) {
    let MR = p.M * p.R;
    let i = (w - tiles * pt.sB) * WX * WY + lid;
    if (pt.sU > 1u && i < MR) {
      var sum = 0.0;
      for (var s = 0u; s < pt.sU; s++) { sum += work[pt.off1 + s * MR + i]; }
      work[pt.base + i] = p.scale * sum;
    }
    return;
  }
  let o = tile_origin(ts.x, p.R);
  let m1 = min(p.M, (ts.y + 1u) * pt.chunkB);
  var acc: array<f32, TM * TN>;
  for (var m0 = ts.y * pt.chunkB; m0 < m1; m0 += BK) {
    for (var e = lid; e < BK * BP; e += WX * WY) {   // dY is contiguous along n (the tile rows)
      let c = e % BP;
      let s = e / BP;
      let n = o.x + c;
      let m = m0 + s;
      var v = 0.0;
      if (n < pt.N && m < m1) { v = dYJ(j, m * pt.N + n); }
      Ls[s * BP + c] = v;
    }
    for (var e = lid; e < BK * BQ; e += WX * WY) {   // U is contiguous along r
      let c = e % BQ;
      let s = e / BQ;
      let r = o.y + c;
      let m = m0 + s;
      var v = 0.0;
      if (r < p.R && m < m1) { v = UJ(j, m * p.R + r); }
      Rs[s * BQ + c] = v;
    }
    workgroupBarrier();
    mma(lid3.x, lid3.y, &acc);
    workgroupBarrier();
  }
  for (var i = 0u; i < TM; i++) {
    for (var jj = 0u; jj < TN; jj++) {
      let n = o.x + lid3.y + i * WY;
      let r = o.y + lid3.x + jj * WX;
      if (n < pt.N && r < p.R) {
        if (pt.sB > 1u) {
          work[pt.off2 + ts.y * pt.N * p.R + n * p.R + r] = acc[i * TN + jj];
        } else {
          let v = p.scale * acc[i * TN + jj];
          let at = pt.oB + n * p.R + r;
          if (ACCUMULATE) { G[at] += v; } else { G[at] = v; }
        }
      }
    }
  }
}

// dA[r, k] (+)= sum_m dU[m, r] * dropout(x)[m, k]. Rows k, columns r (so the tile is narrow along R
// like the others), reduction m (slice of sA).
@compute @workgroup_size(WX, WY)
fn dA_main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
           @builtin(local_invocation_id) lid3: vec3u, @builtin(local_invocation_index) lid: u32) {
  let BP = WY * TM;
  let BQ = WX * TN;
  var w = linear_id(wid, nwg);
  var j = 0u;
  for (; j < p.parts; j++) {
    if (w < wgsA(j)) { break; }
    w -= wgsA(j);
  }
  if (j >= p.parts) { return; }
  let pt = p.part[j];
  let ts = tile_slice(w, tile_count(p.K, p.R));
  let o = tile_origin(ts.x, p.R);
  let m1 = min(p.M, (ts.y + 1u) * pt.chunkA);
  let seedHash = pcg(seeds[pt.seedIndex]);
  var acc: array<f32, TM * TN>;
  for (var m0 = ts.y * pt.chunkA; m0 < m1; m0 += BK) {
    for (var e = lid; e < BK * BP; e += WX * WY) {   // x is contiguous along k (the tile rows)
      let c = e % BP;
      let s = e / BP;
      let k = o.x + c;
      let m = m0 + s;
      var v = 0.0;
      if (k < p.K && m < m1) {
        let i = m * p.K + k;
        v = select(0.0, x[i] * p.invKeep, keep(i, seedHash));
      }
      Ls[s * BP + c] = v;
    }
    for (var e = lid; e < BK * BQ; e += WX * WY) {   // dU is contiguous along r
      let c = e % BQ;
      let s = e / BQ;
      let r = o.y + c;
      let m = m0 + s;
      var v = 0.0;
      if (r < p.R && m < m1) { v = work[pt.base + m * p.R + r]; }
      Rs[s * BQ + c] = v;
    }
    workgroupBarrier();
    mma(lid3.x, lid3.y, &acc);
    workgroupBarrier();
  }
  for (var i = 0u; i < TM; i++) {
    for (var jj = 0u; jj < TN; jj++) {
      let k = o.x + lid3.y + i * WY;
      let r = o.y + lid3.x + jj * WX;
      if (k < p.K && r < p.R) {
        let v = acc[i * TN + jj];
        let at = pt.oA + r * p.K + k;
        if (pt.sA > 1u) {
          work[pt.off1 + ts.y * p.R * p.K + r * p.K + k] = v;
        } else if (ACCUMULATE) { G[at] += v; } else { G[at] = v; }
      }
    }
  }
}

// dX[m, k] += keep(m, k) * invKeep * sum_r dU[m, r] * A[r, k]. Rows m, columns k, reduction r; a
// tile adds the parts in order. The workgroups past the last tile add up each part's dB partials
// (scaled) into dB, then its dA partials into dA, one element per thread, in slice order.
@compute @workgroup_size(WX, WY)
fn dX_main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
           @builtin(local_invocation_id) lid3: vec3u, @builtin(local_invocation_index) lid: u32) {
  let BP = WY * TM;
  let BQ = WX * TN;
  let tiles = tile_count(p.M, p.K);
  var w = linear_id(wid, nwg);
  if (w >= tiles) {
    w -= tiles;
    var j = 0u;
    for (; j < p.parts; j++) {
      if (w < wgsReduce(j)) { break; }
      w -= wgsReduce(j);
    }
    if (j >= p.parts) { return; }
    let pt = p.part[j];
    let NR = pt.N * p.R;
    let RK = p.R * p.K;
    let nB = select(0u, NR, pt.sB > 1u);
    let i = w * WX * WY + lid;
    if (i < nB) {
      var sum = 0.0;
      for (var s = 0u; s < pt.sB; s++) { sum += work[pt.off2 + s * NR + i]; }
      let v = p.scale * sum;
      if (ACCUMULATE) { G[pt.oB + i] += v; } else { G[pt.oB + i] = v; }
    } else if (pt.sA > 1u && i - nB < RK) {
      let e = i - nB;
      var sum = 0.0;
      for (var s = 0u; s < pt.sA; s++) { sum += work[pt.off1 + s * RK + e]; }
      if (ACCUMULATE) { G[pt.oA + e] += sum; } else { G[pt.oA + e] = sum; }
    }
    return;
  }
  let o = tile_origin(w, p.K);
  for (var j = 0u; j < p.parts; j++) {
    let pt = p.part[j];
    let seedHash = pcg(seeds[pt.seedIndex]);
    // Zeroed explicitly per part (a declaration in a loop body was not re-zeroed on SwiftShader).
    var acc: array<f32, TM * TN>;
    for (var i = 0u; i < TM * TN; i++) { acc[i] = 0.0; }
    for (var r0 = 0u; r0 < p.R; r0 += BK) {
      for (var e = lid; e < BK * BP; e += WX * WY) {   // dU is contiguous along r
        let s = e % BK;
        let m = o.x + e / BK;
        let r = r0 + s;
        var v = 0.0;
        if (m < p.M && r < p.R) { v = work[pt.base + m * p.R + r]; }
        Ls[s * BP + e / BK] = v;
      }
      for (var e = lid; e < BK * BQ; e += WX * WY) {   // A is contiguous along k
        let c = e % BQ;
        let s = e / BQ;
        let k = o.y + c;
        let r = r0 + s;
        var v = 0.0;
        if (k < p.K && r < p.R) { v = L[pt.oA + r * p.K + k]; }
        Rs[s * BQ + c] = v;
      }
      workgroupBarrier();
      mma(lid3.x, lid3.y, &acc);
      workgroupBarrier();
    }
    for (var i = 0u; i < TM; i++) {
      for (var jj = 0u; jj < TN; jj++) {
        let m = o.x + lid3.y + i * WY;
        let k = o.y + lid3.x + jj * WX;
        if (m < p.M && k < p.K) {
          let idx = m * p.K + k;
          dX[idx] += select(0.0, p.invKeep * acc[i * TN + jj], keep(idx, seedHash));
        }
      }
    }
  }
}
