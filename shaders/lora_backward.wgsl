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
// All math in f32.
override WX: u32 = 16;
override WY: u32 = 16;
override BK: u32 = 16;
override ACCUMULATE: bool = false;
const TM: u32 = 4;
const TN: u32 = 4;

struct Params {
  M: u32,
  N: u32,
  K: u32,
  R: u32,
  seedIndex: u32,      // the dropout seed is seeds[seedIndex]: seeds change every step, Params never
  keepThreshold: u32,
  sU: u32,             // slices of dU's reduction (over N), each chunkU long (a multiple of BK)
  chunkU: u32,
  sB: u32,             // slices of dB's reduction (over M)
  chunkB: u32,
  sA: u32,             // slices of dA's reduction (over M)
  chunkA: u32,
  off1: u32,           // where region 1 of `work` starts (dU partials, later dA partials)
  off2: u32,           // where the dB partials start
  invKeep: f32,
  scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> dX: array<f32>;  // (M, K)  +=
@group(0) @binding(2) var<storage, read_write> dA: array<f32>;  // (R, K)
@group(0) @binding(3) var<storage, read_write> dB: array<f32>;  // (N, R)
@group(0) @binding(4) var<storage, read_write> work: array<f32>; // dU (M, R) and split-K partials (header)
@group(0) @binding(5) var<storage, read> dY: array<f32>;        // (M, N)
@group(0) @binding(6) var<storage, read> x: array<f32>;         // (M, K)
@group(0) @binding(7) var<storage, read> A: array<f32>;         // (R, K)
@group(0) @binding(8) var<storage, read> B: array<f32>;         // (N, R)
@group(0) @binding(9) var<storage, read> U: array<f32>;         // (M, R)  saved by the forward
@group(0) @binding(10) var<storage, read> seeds: array<u32>;    // per-step dropout seeds (dA, dX only)

var<workgroup> Ls: array<f32, BK * WY * TM>;
var<workgroup> Rs: array<f32, BK * WX * TN>;

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

// dU[m, r] = scale * sum_n dY[m, n] * B[n, r]. Rows m, columns r, reduction n (slice `sl` of sU).
@compute @workgroup_size(WX, WY)
fn dU_main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
           @builtin(local_invocation_id) lid3: vec3u, @builtin(local_invocation_index) lid: u32) {
  let BP = WY * TM;
  let BQ = WX * TN;
  let ts = tile_slice(linear_id(wid, nwg), tile_count(p.M, p.R));
  if (ts.y >= p.sU) { return; }
  let o = tile_origin(ts.x, p.R);
  let n1 = min(p.N, (ts.y + 1u) * p.chunkU);
  var acc: array<f32, TM * TN>;
  for (var n0 = ts.y * p.chunkU; n0 < n1; n0 += BK) {
    for (var e = lid; e < BK * BP; e += WX * WY) {   // dY is contiguous along n
      let s = e % BK;
      let m = o.x + e / BK;
      let n = n0 + s;
      var v = 0.0;
      if (m < p.M && n < n1) { v = dY[m * p.N + n]; }
      Ls[s * BP + e / BK] = v;
    }
    for (var e = lid; e < BK * BQ; e += WX * WY) {   // B is contiguous along r
      let c = e % BQ;
      let s = e / BQ;
      let r = o.y + c;
      let n = n0 + s;
      var v = 0.0;
      if (r < p.R && n < n1) { v = B[n * p.R + r]; }
      Rs[s * BQ + c] = v;
    }
    workgroupBarrier();
    mma(lid3.x, lid3.y, &acc);
    workgroupBarrier();
  }
  let MR = p.M * p.R;
  for (var i = 0u; i < TM; i++) {
    for (var j = 0u; j < TN; j++) {
      let m = o.x + lid3.y + i * WY;
      let r = o.y + lid3.x + j * WX;
      if (m < p.M && r < p.R) {
        if (p.sU == 1u) { work[m * p.R + r] = p.scale * acc[i * TN + j]; }
        else { work[p.off1 + ts.y * MR + m * p.R + r] = acc[i * TN + j]; }
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
  let tiles = tile_count(p.N, p.R);
  let w = linear_id(wid, nwg);
  let ts = tile_slice(w, tiles);
  if (ts.y >= p.sB) {
    let MR = p.M * p.R;
    let i = (w - tiles * p.sB) * WX * WY + lid;
    if (p.sU > 1u && i < MR) {
      var sum = 0.0;
      for (var s = 0u; s < p.sU; s++) { sum += work[p.off1 + s * MR + i]; }
      work[i] = p.scale * sum;
    }
    return;
  }
  let o = tile_origin(ts.x, p.R);
  let m1 = min(p.M, (ts.y + 1u) * p.chunkB);
  var acc: array<f32, TM * TN>;
  for (var m0 = ts.y * p.chunkB; m0 < m1; m0 += BK) {
    for (var e = lid; e < BK * BP; e += WX * WY) {   // dY is contiguous along n (the tile rows)
      let c = e % BP;
      let s = e / BP;
      let n = o.x + c;
      let m = m0 + s;
      var v = 0.0;
      if (n < p.N && m < m1) { v = dY[m * p.N + n]; }
      Ls[s * BP + c] = v;
    }
    for (var e = lid; e < BK * BQ; e += WX * WY) {   // U is contiguous along r
      let c = e % BQ;
      let s = e / BQ;
      let r = o.y + c;
      let m = m0 + s;
      var v = 0.0;
      if (r < p.R && m < m1) { v = U[m * p.R + r]; }
      Rs[s * BQ + c] = v;
    }
    workgroupBarrier();
    mma(lid3.x, lid3.y, &acc);
    workgroupBarrier();
  }
  for (var i = 0u; i < TM; i++) {
    for (var j = 0u; j < TN; j++) {
      let n = o.x + lid3.y + i * WY;
      let r = o.y + lid3.x + j * WX;
      if (n < p.N && r < p.R) {
        if (p.sB > 1u) {
          work[p.off2 + ts.y * p.N * p.R + n * p.R + r] = acc[i * TN + j];
        } else {
          let v = p.scale * acc[i * TN + j];
          if (ACCUMULATE) { dB[n * p.R + r] += v; } else { dB[n * p.R + r] = v; }
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
  let ts = tile_slice(linear_id(wid, nwg), tile_count(p.K, p.R));
  if (ts.y >= p.sA) { return; }
  let o = tile_origin(ts.x, p.R);
  let m1 = min(p.M, (ts.y + 1u) * p.chunkA);
  let seedHash = pcg(seeds[p.seedIndex]);
  var acc: array<f32, TM * TN>;
  for (var m0 = ts.y * p.chunkA; m0 < m1; m0 += BK) {
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
      if (r < p.R && m < m1) { v = work[m * p.R + r]; }
      Rs[s * BQ + c] = v;
    }
    workgroupBarrier();
    mma(lid3.x, lid3.y, &acc);
    workgroupBarrier();
  }
  for (var i = 0u; i < TM; i++) {
    for (var j = 0u; j < TN; j++) {
      let k = o.x + lid3.y + i * WY;
      let r = o.y + lid3.x + j * WX;
      if (k < p.K && r < p.R) {
        let v = acc[i * TN + j];
        if (p.sA > 1u) {
          work[p.off1 + ts.y * p.R * p.K + r * p.K + k] = v;
        } else if (ACCUMULATE) { dA[r * p.K + k] += v; } else { dA[r * p.K + k] = v; }
      }
    }
  }
}

// dX[m, k] += keep(m, k) * invKeep * sum_r dU[m, r] * A[r, k]. Rows m, columns k, reduction r.
// The workgroups past the last tile add up the dB partials (scaled) into dB, then the dA partials
// into dA, one element per thread, in slice order.
@compute @workgroup_size(WX, WY)
fn dX_main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
           @builtin(local_invocation_id) lid3: vec3u, @builtin(local_invocation_index) lid: u32) {
  let BP = WY * TM;
  let BQ = WX * TN;
  let tiles = tile_count(p.M, p.K);
  let w = linear_id(wid, nwg);
  if (w >= tiles) {
    let NR = p.N * p.R;
    let RK = p.R * p.K;
    let nB = select(0u, NR, p.sB > 1u);
    let i = (w - tiles) * WX * WY + lid;
    if (i < nB) {
      var sum = 0.0;
      for (var s = 0u; s < p.sB; s++) { sum += work[p.off2 + s * NR + i]; }
      let v = p.scale * sum;
      if (ACCUMULATE) { dB[i] += v; } else { dB[i] = v; }
    } else if (p.sA > 1u && i - nB < RK) {
      let j = i - nB;
      var sum = 0.0;
      for (var s = 0u; s < p.sA; s++) { sum += work[p.off1 + s * RK + j]; }
      if (ACCUMULATE) { dA[j] += sum; } else { dA[j] = sum; }
    }
    return;
  }
  let o = tile_origin(w, p.K);
  let seedHash = pcg(seeds[p.seedIndex]);
  var acc: array<f32, TM * TN>;
  for (var r0 = 0u; r0 < p.R; r0 += BK) {
    for (var e = lid; e < BK * BP; e += WX * WY) {   // dU is contiguous along r
      let s = e % BK;
      let m = o.x + e / BK;
      let r = r0 + s;
      var v = 0.0;
      if (m < p.M && r < p.R) { v = work[m * p.R + r]; }
      Ls[s * BP + e / BK] = v;
    }
    for (var e = lid; e < BK * BQ; e += WX * WY) {   // A is contiguous along k
      let c = e % BQ;
      let s = e / BQ;
      let k = o.y + c;
      let r = r0 + s;
      var v = 0.0;
      if (k < p.K && r < p.R) { v = A[r * p.K + k]; }
      Rs[s * BQ + c] = v;
    }
    workgroupBarrier();
    mma(lid3.x, lid3.y, &acc);
    workgroupBarrier();
  }
  for (var i = 0u; i < TM; i++) {
    for (var j = 0u; j < TN; j++) {
      let m = o.x + lid3.y + i * WY;
      let k = o.y + lid3.x + j * WX;
      if (m < p.M && k < p.K) {
        let idx = m * p.K + k;
        dX[idx] += select(0.0, p.invKeep * acc[i * TN + j], keep(idx, seedHash));
      }
    }
  }
}
