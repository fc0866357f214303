// Fused NF4 matmul, input gradient of a frozen bitsandbytes Linear4bit (no dW: the base is frozen):
//   dX (M, K) (=|+=) dY (M, N) · dequant(W)
// W (N, K) is NF4-packed exactly as in matmul_nf4.wgsl (flat f = n*K + k, code in byte f/2 with the
// even element in the high nibble, little-endian u32 words, scale absmax[f / BS]; blocks may cross
// rows). Reference op: autograd of torch.nn.functional.linear(X, dequantize_4bit(W)) w.r.t. X.
// ACCUMULATE adds into dX: with LoRA, the adapter path's dX and the base path's meet in one buffer.
// Version 3 (portable f32): the mirror of matmul_nf4.wgsl version 3. 64 (m) × 64 (k) output tile per
// workgroup, 128 invocations each with an 8×4 register tile of adjacent outputs (rows 8ty..,
// columns 4tx..); the reduction runs over N, TN rows of W per step (16 or 32, a pipeline override the
// host picks by the device's workgroup memory), and per n the inner loop reads 2 vec4 of dY and 1 of
// W for 32 FMAs. The W patch (TN rows × 64 k) is read along K, its contiguous direction: per pass,
// invocation i decodes the 4 codes of one half code word (vec4 v = i + 128 s: row v / 16, k =
// 4 (v % 16) ..) with one block scale, straight into Ws[v] (no transpose in this direction; 32 lanes
// store 32 consecutive vec4). dY (64 × TN) is staged transposed as matmul_nf4 stages X: invocation i
// takes row i % 64 and, per pass, 4 adjacent n, so the stores are conflict-free. Workgroup memory:
// 2 × TN × 64 f32 + LUT + dynamic map = 9.1 KiB at TN = 16, 17.1 KiB at TN = 32.
// FIT (M % 64 == 0, K % 64 == 0, every N % TN == 0) drops the bounds checks; otherwise ragged M, N, K
// read zeros, and K % 4 != 0 decodes code by code. Every output sums the same products in the same
// n order with fma as versions 1 and 2, at either step (a step past N adds fma(0, w, acc) = acc).
// DQ: double-quantized absmax as in matmul_nf4.wgsl (scale0).
// Entry `group`: the linears that share one input, in one dispatch (the backward of q/k/v, of gate/up):
//   dX (=|+=) dY_0 · dequant(W_0) + dY_1 · dequant(W_1) [+ dY_2 · dequant(W_2)]
// Same tile and per-output arithmetic as `main`; a workgroup runs main's reduction once per linear,
// each into its own zeroed accumulator, and adds the sums in part order onto dX's old value (with
// ACCUMULATE) exactly as separate dispatches would (dX = dX + acc_0, then + acc_1, then + acc_2), so
// dX is bit-identical to one `main` dispatch per linear. N2 = 0: two linears (part 2's bindings then
// repeat part 1's and are not read). GLU > 0 (gate/up without adapters): the gated MLP's backward in
// the prologue: dY = dm, dY1 = g, dY2 = u, and part 0 (up) reduces du = dm·act(g), part 1 (gate)
// dg = dm·u·act'(g), formed while staging with swiglu_backward.wgsl's expressions and never stored.
// Why: per-dispatch cost; a 16-layer training step saves 32 dispatches for q/k/v and 32 for gate/up
// (two NF4 products and the SwiGLU backward in one).

override ACCUMULATE: bool = false;
override BS: u32 = 64;        // NF4 blocksize
override DQ: bool = false;        // absmax holds double-quantized words, not f32 (see scale0)
override GLU: u32 = 0;            // group: 0 plain parts, 1 SwiGLU prologue, 2 GeGLU (tanh) prologue
override FIT: bool = false;       // M % 64 == 0, K % 64 == 0, N_j % TN == 0: no bounds checks
override TN: u32 = 16u;           // reduction step over N: 16 or 32

const TM = 64u;               // rows of dX per workgroup
const TK = 64u;               // columns of dX per workgroup
const WG = 128u;              // 16 × 8 invocations, each 8 rows × 4 columns of dX
const Q = 16u;                // vec4 per row of a staged tile (64 / 4)

struct Params {
  M: u32,
  N: u32,           // group: N of part 0
  K: u32,
  N1: u32,          // group: N of parts 1 and 2 (0: absent)
  N2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> dX: array<f32>;     // (M, K)
@group(0) @binding(2) var<storage, read> dY: array<f32>;           // (M, N)
@group(0) @binding(3) var<storage, read> Wq: array<u32>;           // (ceil(N*K / 8)) packed NF4 of W (N, K)
@group(0) @binding(4) var<storage, read> absmax: array<u32>;       // (ceil(N*K / BS)) f32 bits, or DQ words
// group: parts 1 and 2 (GLU: dY = dm, dY1 = g, dY2 = u, all (M, F)).
@group(0) @binding(5) var<storage, read> dY1: array<f32>;
@group(0) @binding(6) var<storage, read> dY2: array<f32>;
@group(0) @binding(7) var<storage, read> Wq1: array<u32>;
@group(0) @binding(8) var<storage, read> Wq2: array<u32>;
@group(0) @binding(9) var<storage, read> absmax1: array<u32>;
@group(0) @binding(10) var<storage, read> absmax2: array<u32>;

//#include nf4_tables
//#include nf4_lut
//#include glu_act

var<workgroup> dYs: array<vec4<f32>, TN * Q>;   // dYs[n * Q + m / 4][m % 4] = dY[m0 + m, n0 + n]
var<workgroup> Ws: array<vec4<f32>, TN * Q>;    // Ws[n * Q + k / 4][k % 4] = dequant(W)[n0 + n, k0 + k]

fn dqScale(code: u32, absmax2: u32, offset: u32) -> f32 {
  let scaled = dmap[code] * bitcast<f32>(absmax2);
  return scaled + bitcast<f32>(offset);
}

// The f32 scale of NF4 block b (of nb) from absmax words a(i). Plain: a(b). DQ (src/quant/nf4.ts
// packDoubleQuant): the block's 8-bit code through the dynamic map, times its run of 256's absmax2,
// plus the offset: the f32 operations of the CPU doubleDequantize, so the scale equals the f32 absmax
// it replaces (a driver that contracts the multiply-add into one fma could differ in the last bit;
// SwiftShader does not, and the kernel tests check bit equality with the f32-absmax path).
// `main` reads part 0's buffers only (scale0, weights4Main): any use of parts 1 and 2 would put their
// bindings into its layout, and `main` must fit a device's 8 storage buffers.
fn scale0(b: u32, nb: u32) -> f32 {
  if (DQ) {
    let q = (nb + 3u) / 4u;
    return dqScale((absmax[b >> 2u] >> (8u * (b & 3u))) & 255u, absmax[q + b / 256u], absmax[q + (nb + 255u) / 256u]);
  }
  return bitcast<f32>(absmax[b]);
}
// group: part j's buffers (j is uniform across the workgroup).
fn absJ(j: u32, i: u32) -> u32 {
  if (j == 0u) { return absmax[i]; }
  if (j == 1u) { return absmax1[i]; }
  return absmax2[i];
}
fn wordJ(j: u32, i: u32) -> u32 {
  if (j == 0u) { return Wq[i]; }
  if (j == 1u) { return Wq1[i]; }
  return Wq2[i];
}
fn scaleJ(j: u32, b: u32, nb: u32) -> f32 {
  if (DQ) {
    let q = (nb + 3u) / 4u;
    return dqScale((absJ(j, b >> 2u) >> (8u * (b & 3u))) & 255u, absJ(j, q + b / 256u), absJ(j, q + (nb + 255u) / 256u));
  }
  return bitcast<f32>(absJ(j, b));
}
// dequant(W)[n, k .. k + 3], zero out of range. With K % 4 == 0 the four are one half code word in one
// NF4 block (BS % 4 == 0): one word load, one scale; otherwise code by code.
fn weights4Main(n: u32, k: u32, nb: u32) -> vec4<f32> {
  var v = vec4<f32>(0.0);
  let f = n * p.K + k;
  if (FIT || (p.K & 3u) == 0u) {
    if (!FIT && (n >= p.N || k >= p.K)) { return v; }
    return codes4(Wq[f >> 3u], f) * scale0(f / BS, nb);
  }
  if (n >= p.N) { return v; }
  for (var c = 0u; c < 4u; c++) {
    if (k + c < p.K) { v[c] = nibble(Wq[(f + c) >> 3u], f + c) * scale0((f + c) / BS, nb); }
  }
  return v;
}
// The same for part j of a group.
fn weights4(j: u32, n: u32, N: u32, k: u32, nb: u32) -> vec4<f32> {
  var v = vec4<f32>(0.0);
  let f = n * p.K + k;
  if (FIT || (p.K & 3u) == 0u) {
    if (!FIT && (n >= N || k >= p.K)) { return v; }
    return codes4(wordJ(j, f >> 3u), f) * scaleJ(j, f / BS, nb);
  }
  if (n >= N) { return v; }
  for (var c = 0u; c < 4u; c++) {
    if (k + c < p.K) { v[c] = nibble(wordJ(j, (f + c) >> 3u), f + c) * scaleJ(j, (f + c) / BS, nb); }
  }
  return v;
}

// The GLU prologue takes swiglu_backward.wgsl's expressions (one_pm_tanh, GELU_K, sigmoid from
// lib/glu_act.wgsl).
// group: element i of part j's dY; with GLU, du (j = 0) or dg (j = 1) from dm, g, u.
fn gradJ(j: u32, i: u32) -> f32 {
  if (GLU == 0u) {
    if (j == 0u) { return dY[i]; }
    if (j == 1u) { return dY1[i]; }
    return dY2[i];
  }
  let d = dY[i];
  let v = dY1[i];
  if (GLU == 2u) {
    let pm = one_pm_tanh(GELU_K * (v + 0.044715 * v * v * v));  // (1 + t, 1 - t)
    if (j == 0u) { return d * (0.5 * v * pm.x); }
    let slope = 0.5 * pm.x + 0.5 * v * (pm.x * pm.y) * GELU_K * (1.0 + 3.0 * 0.044715 * v * v);
    return d * dY2[i] * slope;
  }
  let s = sigmoid(v);
  if (j == 0u) { return d * (v * s); }
  return d * dY2[i] * (s * (1.0 + v * (1.0 - s)));
}

// dY[m, n .. n + 3], zero out of range.
fn grad4Main(m: u32, n: u32) -> vec4<f32> {
  var v = vec4<f32>(0.0);
  if (!FIT && m >= p.M) { return v; }
  for (var c = 0u; c < 4u; c++) {
    if (FIT || n + c < p.N) { v[c] = dY[m * p.N + n + c]; }
  }
  return v;
}
// dY_j[m, n .. n + 3] of a group part (with GLU the gradient formed from dm, g, u), zero out of range.
fn grad4(j: u32, m: u32, n: u32, N: u32) -> vec4<f32> {
  var v = vec4<f32>(0.0);
  if (!FIT && m >= p.M) { return v; }
  for (var c = 0u; c < 4u; c++) {
    if (FIT || n + c < N) { v[c] = gradJ(j, m * N + n + c); }
  }
  return v;
}

// Staging of one reduction step, pass s: this invocation's 4 dY values (row lid % 64, n = 4 g ..,
// g = lid / 64 + 2 s) and its 4 weights (vec4 v = lid + WG s of the patch: row v / 16, k = 4 (v % 16) ..).
fn stageGrad(lid: u32, s: u32, gv: vec4<f32>) {
  let r = lid % 64u;
  let g = lid / 64u + 2u * s;
  for (var c = 0u; c < 4u; c++) { dYs[(4u * g + c) * Q + r / 4u][r % 4u] = gv[c]; }
}
fn gradN(lid: u32, s: u32) -> u32 { return 4u * (lid / 64u + 2u * s); }
fn patchN(lid: u32, s: u32) -> u32 { return (lid + WG * s) / 16u; }
fn patchK(lid: u32, s: u32) -> u32 { return 4u * ((lid + WG * s) % 16u); }

// After staging: acc[i][c] += Σ_n dY[8ty + i, n] · W[n, 4tx + c] over the step's TN n in order.
fn reduce(lid: u32, acc: ptr<function, array<vec4<f32>, 8>>) {
  workgroupBarrier();
  let tx = lid % 16u;
  let ty = lid / 16u;
  for (var n = 0u; n < TN; n++) {
    let a0 = dYs[n * Q + 2u * ty];        // rows 8ty .. 8ty + 3
    let a1 = dYs[n * Q + 2u * ty + 1u];   // rows 8ty + 4 .. 8ty + 7
    let b = Ws[n * Q + tx];
    for (var i = 0u; i < 4u; i++) {
      (*acc)[i] = fma(vec4<f32>(a0[i]), b, (*acc)[i]);
      (*acc)[i + 4u] = fma(vec4<f32>(a1[i]), b, (*acc)[i + 4u]);
    }
  }
  workgroupBarrier();
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let tilesK = (p.K + TK - 1u) / TK;
  let tile = wid.x + wid.y * nwg.x;
  // Tiles past the end (2-D grid rounding) get m0 >= M: nothing out, all barriers kept (their loads
  // read zeros, or under FIT whatever WebGPU's bounds-clamped reads give).
  let m0 = (tile / tilesK) * TM;
  let k0 = (tile % tilesK) * TK;
  let tx = lid % 16u;
  let ty = lid / 16u;
  loadTables(lid);

  let nb = (p.N * p.K + BS - 1u) / BS;
  var acc: array<vec4<f32>, 8>;
  for (var n0 = 0u; n0 < p.N; n0 += TN) {
    for (var s = 0u; s < TN / 8u; s++) {
      stageGrad(lid, s, grad4Main(m0 + lid % 64u, n0 + gradN(lid, s)));
      Ws[lid + WG * s] = weights4Main(n0 + patchN(lid, s), k0 + patchK(lid, s), nb);
    }
    reduce(lid, &acc);
  }

  for (var i = 0u; i < 8u; i++) {
    let m = m0 + 8u * ty + i;
    for (var j = 0u; j < 4u; j++) {
      let k = k0 + 4u * tx + j;
      if (m < p.M && (FIT || k < p.K)) {
        let o = m * p.K + k;
        if (ACCUMULATE) { dX[o] += acc[i][j]; } else { dX[o] = acc[i][j]; }
      }
    }
  }
}

@compute @workgroup_size(WG)
fn group(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
         @builtin(local_invocation_index) lid: u32) {
  let tilesK = (p.K + TK - 1u) / TK;
  let tile = wid.x + wid.y * nwg.x;
  let m0 = (tile / tilesK) * TM;
  let k0 = (tile % tilesK) * TK;
  let tx = lid % 16u;
  let ty = lid / 16u;
  loadTables(lid);

  // The running sum of the parts, starting from dX's old value with ACCUMULATE.
  var res: array<vec4<f32>, 8>;
  if (ACCUMULATE) {
    for (var i = 0u; i < 8u; i++) {
      let m = m0 + 8u * ty + i;
      for (var jj = 0u; jj < 4u; jj++) {
        let k = k0 + 4u * tx + jj;
        if (m < p.M && (FIT || k < p.K)) { res[i][jj] = dX[m * p.K + k]; }
      }
    }
  }
  for (var j = 0u; j < 3u; j++) {
    var N = p.N;
    if (j == 1u) { N = p.N1; } else if (j == 2u) { N = p.N2; }
    if (N == 0u) { continue; }
    let nb = (N * p.K + BS - 1u) / BS;
    // Zeroed explicitly: a declaration without initializer inside the loop was not re-zeroed per
    // iteration on SwiftShader (the sums of earlier parts leaked in).
    var acc: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) { acc[i] = vec4<f32>(0.0); }
    for (var n0 = 0u; n0 < N; n0 += TN) {
      for (var s = 0u; s < TN / 8u; s++) {
        stageGrad(lid, s, grad4(j, m0 + lid % 64u, n0 + gradN(lid, s), N));
        Ws[lid + WG * s] = weights4(j, n0 + patchN(lid, s), N, k0 + patchK(lid, s), nb);
      }
      reduce(lid, &acc);
    }
    for (var i = 0u; i < 8u; i++) {
      if (j == 0u && !ACCUMULATE) { res[i] = acc[i]; } else { res[i] = res[i] + acc[i]; }
    }
  }

  for (var i = 0u; i < 8u; i++) {
    let m = m0 + 8u * ty + i;
    for (var jj = 0u; jj < 4u; jj++) {
      let k = k0 + 4u * tx + jj;
      if (m < p.M && (FIT || k < p.K)) { dX[m * p.K + k] = res[i][jj]; }
    }
  }
}
