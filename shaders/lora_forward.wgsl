// LoRA forward (PEFT `lora.Linear.forward`, layer.py): the adapter branch added onto the base output
//   U (M, R) = dropout(x) · Aᵀ                        entry `down`  (U is saved for the backward)
//   Y (M, N) += scale · U · Bᵀ                        entry `up`    (Y already holds base(x))
// Shapes: x (M, K), A (R, K), B (N, R), row-major. scale = alpha / R, or alpha / sqrt(R) (rsLoRA).
// Reference op: torch.nn.functional.linear(linear(dropout(x), A), B) * scale, dropout = nn.Dropout(p)
// in training mode. Our dropout is not torch's RNG: keep(i) = pcg(i ^ pcg(seed)) >= keepThreshold for
// the flat element index i = m*K + k, kept values scaled by invKeep = 1/(1-p). It is stateless, so the
// backward regenerates the same mask from (seed, i) instead of storing an (M, K) mask. p = 0 gives
// keepThreshold = 0 and invKeep = 1: every element kept and multiplied by exactly 1 (identity).
// Version 1: one register-tiled matmul body for both stages. A workgroup of WX x WY threads owns a
// (WY*TM) x (WX*TN) output tile; the reduction runs in BK-long chunks staged in workgroup memory; each
// thread accumulates TM x TN outputs in registers. Output rows and columns are strided by WY and WX so
// neighbouring threads touch neighbouring addresses. Ragged edges load zeros (select, no early return).
// Entry `decode` (inference, M <= 4 rows, no dropout, U not saved): both stages in one dispatch.
// Each 64-thread workgroup computes all of U (M·R tree reductions over K, cheap at decoding's M)
// into workgroup memory, then its 64 columns of Y; a decoded token's LoRA costs one dispatch.
// `down` uses a narrow tile along R (R is 1..64); `up` a square one. No split-K yet: `down` at small M
// has few workgroups (each reduces all of K); it is ~1% of the layer's FLOPs, so left for later.
// All math in f32.

//#if subgroups
enable subgroups;
//#endif

override WX: u32 = 16;   // threads along the output columns
override WY: u32 = 16;   // threads along the output rows
override BK: u32 = 16;   // reduction chunk
const TM: u32 = 4;       // outputs per thread along rows (register tile; must be const in WGSL)
const TN: u32 = 4;       // outputs per thread along columns

struct Params {
  M: u32,
  N: u32,
  K: u32,
  R: u32,
  seedIndex: u32,      // the dropout seed is seeds[seedIndex]: seeds change every step, Params never
  keepThreshold: u32,  // floor(p * 2^32): keep when the hash is >= this
  invKeep: f32,        // f32(1 / (1 - p))
  scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> Y: array<f32>;   // (M, N)  += scale * U Bᵀ
@group(0) @binding(2) var<storage, read_write> U: array<f32>;   // (M, R)  written by down, read by up
@group(0) @binding(3) var<storage, read> x: array<f32>;         // (M, K)
@group(0) @binding(4) var<storage, read> A: array<f32>;         // (R, K)
@group(0) @binding(5) var<storage, read> B: array<f32>;         // (N, R)
@group(0) @binding(6) var<storage, read> seeds: array<u32>;     // per-step dropout seeds (down only)

// Tiles of the two operands, stored [s][row] and [s][col] so the inner loop reads along rows/cols.
var<workgroup> Ls: array<f32, BK * WY * TM>;
var<workgroup> Rs: array<f32, BK * WX * TN>;

// PCG hash (Jarzynski & Olano 2020, "Hash Functions for GPU Rendering"). Must stay identical to
// lora_backward.wgsl, lora_forward.ref.ts and scripts/goldens/lora.py.
fn pcg(v: u32) -> u32 {
  let state = v * 747796405u + 2891336453u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}

// dropout(x)[i] for flat index i of x (M, K).
fn dropped(i: u32, seedHash: u32) -> f32 {
  let v = x[i] * p.invKeep;
  return select(0.0, v, pcg(i ^ seedHash) >= p.keepThreshold);
}

// acc[i*TN + j] += sum_s Ls[s][ty + i*WY] * Rs[s][tx + j*WX] over one staged chunk.
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

// U[m, r] = sum_k dropout(x)[m, k] * A[r, k]. Tile rows = m, columns = r, reduction = k.
@compute @workgroup_size(WX, WY)
fn down(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_id) lid3: vec3u, @builtin(local_invocation_index) lid: u32) {
  let BP = WY * TM;
  let BQ = WX * TN;
  let NT = WX * WY;
  let tilesQ = (p.R + BQ - 1u) / BQ;
  let w = wid.x + wid.y * nwg.x;
  let p0 = (w / tilesQ) * BP;   // first m of the tile; past M for the spare workgroups of the grid
  let q0 = (w % tilesQ) * BQ;   // first r
  let seedHash = pcg(seeds[p.seedIndex]);
  var acc: array<f32, TM * TN>;
  for (var k0 = 0u; k0 < p.K; k0 += BK) {
    // Both operands are contiguous along k, so consecutive threads take consecutive k.
    for (var e = lid; e < BK * BP; e += NT) {
      let s = e % BK;
      let m = p0 + e / BK;
      let k = k0 + s;
      var v = 0.0;
      if (m < p.M && k < p.K) { v = dropped(m * p.K + k, seedHash); }
      Ls[s * BP + e / BK] = v;
    }
    for (var e = lid; e < BK * BQ; e += NT) {
      let s = e % BK;
      let r = q0 + e / BK;
      let k = k0 + s;
      var v = 0.0;
      if (r < p.R && k < p.K) { v = A[r * p.K + k]; }
      Rs[s * BQ + e / BK] = v;
    }
    workgroupBarrier();
    mma(lid3.x, lid3.y, &acc);
    workgroupBarrier();
  }
  for (var i = 0u; i < TM; i++) {
    for (var j = 0u; j < TN; j++) {
      let m = p0 + lid3.y + i * WY;
      let r = q0 + lid3.x + j * WX;
      if (m < p.M && r < p.R) { U[m * p.R + r] = acc[i * TN + j]; }
    }
  }
}

// Y[m, n] += scale * sum_r U[m, r] * B[n, r]. Tile rows = m, columns = n, reduction = r.
@compute @workgroup_size(WX, WY)
fn up(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
      @builtin(local_invocation_id) lid3: vec3u, @builtin(local_invocation_index) lid: u32) {
  let BP = WY * TM;
  let BQ = WX * TN;
  let NT = WX * WY;
  let tilesQ = (p.N + BQ - 1u) / BQ;
  let w = wid.x + wid.y * nwg.x;
  let p0 = (w / tilesQ) * BP;
  let q0 = (w % tilesQ) * BQ;
  var acc: array<f32, TM * TN>;
  for (var r0 = 0u; r0 < p.R; r0 += BK) {
    // U and B are both contiguous along r.
    for (var e = lid; e < BK * BP; e += NT) {
      let s = e % BK;
      let m = p0 + e / BK;
      let r = r0 + s;
      var v = 0.0;
      if (m < p.M && r < p.R) { v = U[m * p.R + r]; }
      Ls[s * BP + e / BK] = v;
    }
    for (var e = lid; e < BK * BQ; e += NT) {
      let s = e % BK;
      let n = q0 + e / BK;
      let r = r0 + s;
      var v = 0.0;
      if (n < p.N && r < p.R) { v = B[n * p.R + r]; }
      Rs[s * BQ + e / BK] = v;
    }
    workgroupBarrier();
    mma(lid3.x, lid3.y, &acc);
    workgroupBarrier();
  }
  for (var i = 0u; i < TM; i++) {
    for (var j = 0u; j < TN; j++) {
      let m = p0 + lid3.y + i * WY;
      let n = q0 + lid3.x + j * WX;
      if (m < p.M && n < p.N) { Y[m * p.N + n] += p.scale * acc[i * TN + j]; }
    }
  }
}

const DW: u32 = 64u;
var<workgroup> part: array<f32, DW>;
var<workgroup> Us: array<f32, 256>;  // U (M <= 4, R <= 64)

@compute @workgroup_size(DW)
fn decode(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
          @builtin(local_invocation_index) lid: u32) {
  // U[m, r] = sum_k x[m, k] * A[r, k]: threads stride over k, then a tree sum (p.M, p.R uniform).
  for (var q = 0u; q < p.M * p.R; q++) {
    let m = q / p.R;
    let r = q - m * p.R;
    var s = 0.0;
    for (var k = lid; k < p.K; k += DW) { s = fma(x[m * p.K + k], A[r * p.K + k], s); }
    part[lid] = s;
    workgroupBarrier();
    for (var h = DW / 2u; h > 0u; h >>= 1u) {
      if (lid < h) { part[lid] += part[lid + h]; }
      workgroupBarrier();
    }
    if (lid == 0u) { Us[q] = part[0]; }
    workgroupBarrier();
  }
  let n = (wid.x + wid.y * nwg.x) * DW + lid;
  if (n >= p.N) { return; }  // after the last barrier
  for (var m = 0u; m < p.M; m++) {
    var acc = 0.0;
    for (var r = 0u; r < p.R; r++) { acc = fma(Us[m * p.R + r], B[n * p.R + r], acc); }
    Y[m * p.N + n] += p.scale * acc;
  }
}

// Entry `decode_qkv` (inference, M <= 4, no dropout): the input RMSNorm and the LoRA branches of
// up to three projections that read its output (q, k, v), in one dispatch that runs before the
// base projections (matvec_nf4_fused.wgsl `qkv`, which then adds into these outputs):
//   x1 = rmsnorm(h) with weight w      (written by workgroup 0; the base projections read it)
//   Y_j (M, N_j) = scale · (x1 · A_jᵀ) · B_jᵀ   for each projection j with an adapter
// Workgroups are dealt to the projections in turn (NWG_j of them for j, 0 without an adapter); each
// recomputes rstd and its projection's U as `decode` does. A_j and B_j are read from the one LoRA
// parameter buffer at offsets in the uniform. Every value equals what rmsnorm_forward.wgsl then
// `decode` compute: the workgroup has rmsnorm_forward's 128 lanes and reduces the row as it does
// (subgroups where the device has them, else its 128-lane tree); U's sums use the first 64 lanes
// as `decode` does, and its products are the same (Y = s·acc here, Y = base + s·acc there: the
// base's later add gives the same f32 sum).
struct QkvParams {
  M: u32,
  K: u32,
  R: u32,
  eps: f32,
  scale: f32,
  N0: u32,
  N1: u32,
  N2: u32,
  NWG0: u32,
  NWG1: u32,
  A0: u32,     // offsets (f32 elements) of A_j (R, K) and B_j (N_j, R) in P
  B0: u32,
  A1: u32,
  B1: u32,
  A2: u32,
  B2: u32,
}
@group(0) @binding(0) var<uniform> pq: QkvParams;
@group(0) @binding(2) var<storage, read_write> Yk: array<f32>;   // (M, N1), decode_qkv
@group(0) @binding(7) var<storage, read_write> Yv: array<f32>;   // (M, N2), decode_qkv
@group(0) @binding(8) var<storage, read> normW: array<f32>;      // (K), decode_qkv
@group(0) @binding(9) var<storage, read> P: array<f32>;          // every A and B, decode_qkv
@group(0) @binding(10) var<storage, read_write> x1: array<f32>;  // (M, K) out, decode_qkv
var<workgroup> rs: array<f32, 4>;
const NW: u32 = 128u;                    // rmsnorm_forward.wgsl's WG
var<workgroup> partN: array<f32, NW>;

struct Red {
  @builtin(local_invocation_index) lid: u32,
//#if subgroups
  @builtin(subgroup_invocation_id) lane: u32,
  @builtin(subgroup_id) sg: u32,
  @builtin(num_subgroups) nsg: u32,
//#endif
}

// rmsnorm_forward.wgsl's block_sum over this workgroup of NW lanes, on the same path.
fn normSum(id: Red, v: f32) -> f32 {
//#if subgroups
  let s = subgroupAdd(v);
  if (id.lane == 0u) { partN[id.sg] = s; }
  workgroupBarrier();
  var t = 0.0;
  for (var i = 0u; i < id.nsg; i++) { t += partN[i]; }
  return t;
//#else
  partN[id.lid] = v;
  workgroupBarrier();
  for (var s = NW / 2u; s > 0u; s >>= 1u) {
    if (id.lid < s) { partN[id.lid] += partN[id.lid + s]; }
    workgroupBarrier();
  }
  return partN[0];
//#endif
}

@compute @workgroup_size(NW)
fn decode_qkv(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, id: Red) {
  let lid = id.lid;
  let w = wid.x + wid.y * nwg.x;
  var j = 2u;
  var w0 = pq.NWG0 + pq.NWG1;
  if (w < pq.NWG0) { j = 0u; w0 = 0u; } else if (w < pq.NWG0 + pq.NWG1) { j = 1u; w0 = pq.NWG0; }
  var N = pq.N2;
  var offA = pq.A2;
  var offB = pq.B2;
  if (j == 0u) { N = pq.N0; offA = pq.A0; offB = pq.B0; } else if (j == 1u) { N = pq.N1; offA = pq.A1; offB = pq.B1; }
  // rstd of each row, as rmsnorm_forward computes it.
  for (var m = 0u; m < pq.M; m++) {
    var ss = 0.0;
    for (var c = lid; c < pq.K; c += NW) { let v = x[m * pq.K + c]; ss += v * v; }
    let t = normSum(id, ss);
    if (lid == 0u) { rs[m] = inverseSqrt(t / f32(pq.K) + pq.eps); }
    workgroupBarrier();
  }
  if (w == 0u) {
    for (var m = 0u; m < pq.M; m++) {
      for (var c = lid; c < pq.K; c += NW) { x1[m * pq.K + c] = normW[c] * (x[m * pq.K + c] * rs[m]); }
    }
  }
  // U as `decode` computes it: its DW lanes stride over k and its tree sums them (the other lanes
  // only keep the barriers company).
  for (var q = 0u; q < pq.M * pq.R; q++) {
    let m = q / pq.R;
    let r = q - m * pq.R;
    var s = 0.0;
    if (lid < DW) {
      for (var k = lid; k < pq.K; k += DW) { s = fma(normW[k] * (x[m * pq.K + k] * rs[m]), P[offA + r * pq.K + k], s); }
      part[lid] = s;
    }
    workgroupBarrier();
    for (var h = DW / 2u; h > 0u; h >>= 1u) {
      if (lid < h) { part[lid] += part[lid + h]; }
      workgroupBarrier();
    }
    if (lid == 0u) { Us[q] = part[0]; }
    workgroupBarrier();
  }
  let n = (w - w0) * DW + lid;
  if (lid >= DW || n >= N) { return; }  // DW columns a workgroup; after the last barrier
  for (var m = 0u; m < pq.M; m++) {
    var acc = 0.0;
    for (var r = 0u; r < pq.R; r++) { acc = fma(Us[m * pq.R + r], P[offB + n * pq.R + r], acc); }
    let v = pq.scale * acc;
    let o = m * N + n;
    if (j == 0u) { Y[o] = v; } else if (j == 1u) { Yk[o] = v; } else { Yv[o] = v; }
  }
}

// Entry `up_qkv` (training, prompts): `up` for up to three projections that share their input (q, k,
// v) in one dispatch, Y_j (M, N_j) += scale · U_j · B_jᵀ, after each projection's `down`. Tiles are
// dealt to the projections in turn (T0 for q, T1 for k, the rest for v; none for one without an
// adapter); each tile does exactly what `up` does, so the sums are bit-identical. B_j is read from
// the one LoRA parameter buffer at its offset.
struct UpParams {
  M: u32,
  R: u32,
  scale: f32,
  N0: u32,
  N1: u32,
  N2: u32,
  T0: u32,
  T1: u32,
  B0: u32,     // offsets (f32 elements) of B_j (N_j, R) in P
  B1: u32,
  B2: u32,
}
@group(0) @binding(0) var<uniform> pu: UpParams;
@group(0) @binding(11) var<storage, read> U0: array<f32>;        // (M, R), up_qkv
@group(0) @binding(12) var<storage, read> U1: array<f32>;
@group(0) @binding(13) var<storage, read> U2: array<f32>;

fn uOf(j: u32, i: u32) -> f32 {
  if (j == 0u) { return U0[i]; }
  if (j == 1u) { return U1[i]; }
  return U2[i];
}

@compute @workgroup_size(WX, WY)
fn up_qkv(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
          @builtin(local_invocation_id) lid3: vec3u, @builtin(local_invocation_index) lid: u32) {
  let BP = WY * TM;
  let BQ = WX * TN;
  let NT = WX * WY;
  var w = wid.x + wid.y * nwg.x;
  var j = 2u;
  var N = pu.N2;
  var offB = pu.B2;
  if (w < pu.T0) { j = 0u; N = pu.N0; offB = pu.B0; }
  else if (w < pu.T0 + pu.T1) { j = 1u; N = pu.N1; offB = pu.B1; w -= pu.T0; }
  else { w -= pu.T0 + pu.T1; }
  // Past the end (grid rounding, or a projection with N = 0): p0 >= M, nothing loaded or stored.
  let tilesQ = max((N + BQ - 1u) / BQ, 1u);
  var p0 = (w / tilesQ) * BP;
  if (N == 0u) { p0 = pu.M; }
  let q0 = (w % tilesQ) * BQ;
  var acc: array<f32, TM * TN>;
  for (var r0 = 0u; r0 < pu.R; r0 += BK) {
    for (var e = lid; e < BK * BP; e += NT) {
      let s = e % BK;
      let m = p0 + e / BK;
      let r = r0 + s;
      var v = 0.0;
      if (m < pu.M && r < pu.R) { v = uOf(j, m * pu.R + r); }
      Ls[s * BP + e / BK] = v;
    }
    for (var e = lid; e < BK * BQ; e += NT) {
      let s = e % BK;
      let n = q0 + e / BK;
      let r = r0 + s;
      var v = 0.0;
      if (n < N && r < pu.R) { v = P[offB + n * pu.R + r]; }
      Rs[s * BQ + e / BK] = v;
    }
    workgroupBarrier();
    mma(lid3.x, lid3.y, &acc);
    workgroupBarrier();
  }
  for (var i = 0u; i < TM; i++) {
    for (var jj = 0u; jj < TN; jj++) {
      let m = p0 + lid3.y + i * WY;
      let n = q0 + lid3.x + jj * WX;
      if (m < pu.M && n < N) {
        let o = m * N + n;
        let v = pu.scale * acc[i * TN + jj];
        if (j == 0u) { Y[o] += v; } else if (j == 1u) { Yk[o] += v; } else { Yv[o] += v; }
      }
    }
  }
}

// Entry `down_qkv` (training, prompts): `down` for up to three adapters that share their input x (q,
// k, v) in one dispatch, U_j (M, R) = dropout_j(x) · A_jᵀ. The host lists the adapters present as
// slots 0 .. n-1; they share M and R, so each has the same T tiles and slot i takes tiles i·T ..
// i·T + T - 1. A tile does exactly what `down` does with its adapter's seed (the same flat mask
// index m*K + k), so every U_j is bit-identical to `down`'s. A_j is read from the one LoRA parameter
// buffer P and U_j written into the one buffer Ug, each at its offset: no storage buffer is chosen
// per invocation, which on a SIMD-emulating driver (SwiftShader runs every side of a branch under a
// lane mask) would cost one load per slot.
struct DownParams {
  M: u32,
  K: u32,
  R: u32,
  keepThreshold: u32,
  invKeep: f32,
  T: u32,      // tiles per adapter
  n: u32,      // adapters present
  A0: u32,     // offsets (f32 elements) of A_i (R, K) in P, of U_i (M, R) in Ug, and seed indices
  A1: u32,
  A2: u32,
  U0: u32,
  U1: u32,
  U2: u32,
  S0: u32,
  S1: u32,
  S2: u32,
}
@group(0) @binding(0) var<uniform> pd: DownParams;
@group(0) @binding(14) var<storage, read_write> Ug: array<f32>;   // every U_i, down_qkv

@compute @workgroup_size(WX, WY)
fn down_qkv(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
            @builtin(local_invocation_id) lid3: vec3u, @builtin(local_invocation_index) lid: u32) {
  let BP = WY * TM;
  let BQ = WX * TN;
  let NT = WX * WY;
  let w = wid.x + wid.y * nwg.x;
  let i = w / pd.T;
  let wl = w % pd.T;
  var offA = pd.A2;
  var offU = pd.U2;
  var si = pd.S2;
  if (i == 0u) { offA = pd.A0; offU = pd.U0; si = pd.S0; } else if (i == 1u) { offA = pd.A1; offU = pd.U1; si = pd.S1; }
  let tilesQ = (pd.R + BQ - 1u) / BQ;
  // Past the last adapter (grid rounding): p0 >= M, nothing loaded or stored.
  var p0 = (wl / tilesQ) * BP;
  if (i >= pd.n) { p0 = pd.M; }
  let q0 = (wl % tilesQ) * BQ;
  let seedHash = pcg(seeds[si]);
  var acc: array<f32, TM * TN>;
  for (var k0 = 0u; k0 < pd.K; k0 += BK) {
    for (var e = lid; e < BK * BP; e += NT) {
      let s = e % BK;
      let m = p0 + e / BK;
      let k = k0 + s;
      var v = 0.0;
      if (m < pd.M && k < pd.K) {
        let f = m * pd.K + k;
        v = select(0.0, x[f] * pd.invKeep, pcg(f ^ seedHash) >= pd.keepThreshold);
      }
      Ls[s * BP + e / BK] = v;
    }
    for (var e = lid; e < BK * BQ; e += NT) {
      let s = e % BK;
      let r = q0 + e / BK;
      let k = k0 + s;
      var v = 0.0;
      if (r < pd.R && k < pd.K) { v = P[offA + r * pd.K + k]; }
      Rs[s * BQ + e / BK] = v;
    }
    workgroupBarrier();
    mma(lid3.x, lid3.y, &acc);
    workgroupBarrier();
  }
  for (var a = 0u; a < TM; a++) {
    for (var b = 0u; b < TN; b++) {
      let m = p0 + lid3.y + a * WY;
      let r = q0 + lid3.x + b * WX;
      if (m < pd.M && r < pd.R) { Ug[offU + m * pd.R + r] = acc[a * TN + b]; }
    }
  }
}
