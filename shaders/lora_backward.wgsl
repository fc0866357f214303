// LoRA backward (autograd of PEFT `lora.Linear.forward`), given dY (M, N) and the forward's U (M, R):
//   dU (M, R)  = scale · dY · B                          entry `dU_main`  (scratch, read by dA and dX)
//   dB (N, R) (+)= scale · dYᵀ · U                       entry `dB_main`  (reduction over the M tokens)
//   dA (R, K) (+)= dUᵀ · dropout(x)                      entry `dA_main`  (reduction over the M tokens)
//   dX (M, K) += mask/(1-p) ⊙ (dU · A)                   entry `dX_main`  (onto the base layer's dX)
// Shapes: x (M, K), A (R, K), B (N, R), row-major. Run dU before dA and dX (the host does).
// Reference op: torch autograd of linear(linear(dropout(x), A), B) * scale; goldens in
// scripts/goldens/lora.py. The dropout mask is regenerated from (seed, flat index m*K + k) with the
// same PCG hash as lora_forward.wgsl, so nothing of size (M, K) was saved.
// ACCUMULATE adds into dA and dB (gradient accumulation over micro-batches); dX always accumulates.
// Version 1: the register-tiled matmul body of lora_forward.wgsl (WX x WY threads, TM x TN outputs each,
// BK-long reduction chunks in workgroup memory, zero-filled ragged edges). Each workgroup owns its
// output tile and reduces the whole of M itself, so any M is exact and ACCUMULATE is a plain +=.
// No split-K over M yet: dA/dB get ceil(K/64) or ceil(N/64) workgroups per 16 ranks, which is
// enough for correctness and small next to the base matmuls. All math in f32.

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
  invKeep: f32,
  scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> dX: array<f32>;  // (M, K)  +=
@group(0) @binding(2) var<storage, read_write> dA: array<f32>;  // (R, K)
@group(0) @binding(3) var<storage, read_write> dB: array<f32>;  // (N, R)
@group(0) @binding(4) var<storage, read_write> dU: array<f32>;  // (M, R)  scratch
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

// The tile this workgroup owns: (first row, first column), for `cols` output columns.
fn tile_origin(wid: vec3u, nwg: vec3u, cols: u32) -> vec2u {
  let tilesQ = (cols + WX * TN - 1u) / (WX * TN);
  let w = wid.x + wid.y * nwg.x;
  return vec2u((w / tilesQ) * (WY * TM), (w % tilesQ) * (WX * TN));
}

// dU[m, r] = scale * sum_n dY[m, n] * B[n, r]. Rows m, columns r, reduction n.
@compute @workgroup_size(WX, WY)
fn dU_main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
           @builtin(local_invocation_id) lid3: vec3u, @builtin(local_invocation_index) lid: u32) {
  let BP = WY * TM;
  let BQ = WX * TN;
  let o = tile_origin(wid, nwg, p.R);
  var acc: array<f32, TM * TN>;
  for (var n0 = 0u; n0 < p.N; n0 += BK) {
    for (var e = lid; e < BK * BP; e += WX * WY) {   // dY is contiguous along n
      let s = e % BK;
      let m = o.x + e / BK;
      let n = n0 + s;
      var v = 0.0;
      if (m < p.M && n < p.N) { v = dY[m * p.N + n]; }
      Ls[s * BP + e / BK] = v;
    }
    for (var e = lid; e < BK * BQ; e += WX * WY) {   // B is contiguous along r
      let c = e % BQ;
      let s = e / BQ;
      let r = o.y + c;
      let n = n0 + s;
      var v = 0.0;
      if (r < p.R && n < p.N) { v = B[n * p.R + r]; }
      Rs[s * BQ + c] = v;
    }
    workgroupBarrier();
    mma(lid3.x, lid3.y, &acc);
    workgroupBarrier();
  }
  for (var i = 0u; i < TM; i++) {
    for (var j = 0u; j < TN; j++) {
      let m = o.x + lid3.y + i * WY;
      let r = o.y + lid3.x + j * WX;
      if (m < p.M && r < p.R) { dU[m * p.R + r] = p.scale * acc[i * TN + j]; }
    }
  }
}

// dB[n, r] (+)= scale * sum_m dY[m, n] * U[m, r]. Rows n, columns r, reduction m.
@compute @workgroup_size(WX, WY)
fn dB_main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
           @builtin(local_invocation_id) lid3: vec3u, @builtin(local_invocation_index) lid: u32) {
  let BP = WY * TM;
  let BQ = WX * TN;
  let o = tile_origin(wid, nwg, p.R);
  var acc: array<f32, TM * TN>;
  for (var m0 = 0u; m0 < p.M; m0 += BK) {
    for (var e = lid; e < BK * BP; e += WX * WY) {   // dY is contiguous along n (the tile rows)
      let c = e % BP;
      let s = e / BP;
      let n = o.x + c;
      let m = m0 + s;
      var v = 0.0;
      if (n < p.N && m < p.M) { v = dY[m * p.N + n]; }
      Ls[s * BP + c] = v;
    }
    for (var e = lid; e < BK * BQ; e += WX * WY) {   // U is contiguous along r
      let c = e % BQ;
      let s = e / BQ;
      let r = o.y + c;
      let m = m0 + s;
      var v = 0.0;
      if (r < p.R && m < p.M) { v = U[m * p.R + r]; }
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
        let v = p.scale * acc[i * TN + j];
        if (ACCUMULATE) { dB[n * p.R + r] += v; } else { dB[n * p.R + r] = v; }
      }
    }
  }
}

// dA[r, k] (+)= sum_m dU[m, r] * dropout(x)[m, k]. Rows k, columns r (so the tile is narrow along R
// like the others), reduction m.
@compute @workgroup_size(WX, WY)
fn dA_main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
           @builtin(local_invocation_id) lid3: vec3u, @builtin(local_invocation_index) lid: u32) {
  let BP = WY * TM;
  let BQ = WX * TN;
  let o = tile_origin(wid, nwg, p.R);
  let seedHash = pcg(seeds[p.seedIndex]);
  var acc: array<f32, TM * TN>;
  for (var m0 = 0u; m0 < p.M; m0 += BK) {
    for (var e = lid; e < BK * BP; e += WX * WY) {   // x is contiguous along k (the tile rows)
      let c = e % BP;
      let s = e / BP;
      let k = o.x + c;
      let m = m0 + s;
      var v = 0.0;
      if (k < p.K && m < p.M) {
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
      if (r < p.R && m < p.M) { v = dU[m * p.R + r]; }
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
        if (ACCUMULATE) { dA[r * p.K + k] += v; } else { dA[r * p.K + k] = v; }
      }
    }
  }
}

// dX[m, k] += keep(m, k) * invKeep * sum_r dU[m, r] * A[r, k]. Rows m, columns k, reduction r.
@compute @workgroup_size(WX, WY)
fn dX_main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
           @builtin(local_invocation_id) lid3: vec3u, @builtin(local_invocation_index) lid: u32) {
  let BP = WY * TM;
  let BQ = WX * TN;
  let o = tile_origin(wid, nwg, p.K);
  let seedHash = pcg(seeds[p.seedIndex]);
  var acc: array<f32, TM * TN>;
  for (var r0 = 0u; r0 < p.R; r0 += BK) {
    for (var e = lid; e < BK * BP; e += WX * WY) {   // dU is contiguous along r
      let s = e % BK;
      let m = o.x + e / BK;
      let r = r0 + s;
      var v = 0.0;
      if (m < p.M && r < p.R) { v = dU[m * p.R + r]; }
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
