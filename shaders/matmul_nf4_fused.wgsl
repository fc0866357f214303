// Fused NF4 matmuls over frozen linears that share their input, matmul_nf4.wgsl's tiled kernel
// (M > 4 rows: prompts and training) run for several weights in one dispatch:
//   entry `qkv`     Y_j (M, N_j) = X (M, K) · dequant(W_j)ᵀ,   j = 0, 1, 2 (q, k, v)
//   entry `gateup`  G = X · dequant(Wg)ᵀ, U = X · dequant(Wu)ᵀ, and Mo = silu(G) · U (SwiGLU), all
//                   three stored (G and U are saved for the backward, Mo feeds down_proj)
// W_j NF4-packed as in matmul_nf4.wgsl (docs/nf4.md), each with its own absmax (plain or DQ).
// Reference ops: torch.nn.functional.linear(X, dequantize_4bit(W_j)); silu(g) * u. Twin:
// matmul_nf4_fused.ref.ts.
// Why: per-dispatch cost. q, k and v read the same x1, gate and up the same x2; a training step of a
// 16-layer model saves 64 dispatches (3 → 1 for q/k/v, 3 → 1 for gate, up and SwiGLU).
// Layout: exactly matmul_nf4.wgsl's (version 3): 64×64 tiles of 128 invocations, K steps of TK (16
// or 32, the host's choice by workgroup memory), 8×4 register tiles of adjacent outputs read as vec4
// from k-major vec4 staging, W decoded 4 codes at a time, so every output is bit-identical to it at
// either K step. (No bounds-free form here: the checks are uniform per workgroup.)
//   - `qkv`: tiles are dealt to the three linears in turn (T0 tiles for q, T1 for k, the rest for
//     v); a tile reads one linear's buffers, chosen uniformly for the workgroup.
//   - `gateup`: a tile stages X once and both weights' patches (3 × TK × 64 f32 + LUT + dynamic map
//     = 13.1 KiB at TK = 16, 25.1 KiB at TK = 32), and keeps 8×4 sums of each: the SwiGLU product
//     is formed in the epilogue. `qkv` stages two tiles: 9.1 KiB at TK = 16, 17.1 KiB at TK = 32.
// No bias (the host runs the unfused kernels for a linear with one), no accumulate.

override BS: u32 = 64;        // NF4 blocksize
override DQ: bool = false;    // absmax holds double-quantized words, not f32
override TK: u32 = 16u;       // reduction step: 16 or 32

const TM = 64u;
const TN = 64u;
const WG = 128u;              // 16 × 8 invocations, each 8 rows × 4 columns
const Q = 16u;                // vec4 per k row of a staged tile (64 rows / 4)

struct Params {
  M: u32,
  K: u32,
  N0: u32,    // qkv: columns of each linear; gateup: N0 = F
  N1: u32,
  N2: u32,
  T0: u32,    // qkv: tiles of linear 0, then of linear 1
  T1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> Y0: array<f32>;   // qkv: q (M, N0); gateup: G (M, F)
@group(0) @binding(2) var<storage, read_write> Y1: array<f32>;   // qkv: k (M, N1); gateup: U
@group(0) @binding(3) var<storage, read_write> Y2: array<f32>;   // qkv: v (M, N2); gateup: Mo
@group(0) @binding(4) var<storage, read> X: array<f32>;          // (M, K)
@group(0) @binding(5) var<storage, read> W0: array<u32>;         // packed codes
@group(0) @binding(6) var<storage, read> W1: array<u32>;
@group(0) @binding(7) var<storage, read> W2: array<u32>;
@group(0) @binding(8) var<storage, read> A0: array<u32>;         // absmax: f32 bits or DQ words
@group(0) @binding(9) var<storage, read> A1: array<u32>;
@group(0) @binding(10) var<storage, read> A2: array<u32>;

//#include nf4_tables
//#include nf4_lut
//#include glu_act

var<workgroup> Xs: array<vec4<f32>, TK * Q>;   // Xs[k * Q + r / 4][r % 4] = X[m0 + r, k0 + k]
var<workgroup> Ws: array<vec4<f32>, TK * Q>;   // qkv: the tile's linear; gateup: gate
var<workgroup> Vs: array<vec4<f32>, TK * Q>;   // gateup: up

// blockScale (lib/nf4_block_scale.wgsl), on words fetched by the caller from its linear's absmax.
fn dqScale(code: u32, absmax2: u32, offset: u32) -> f32 {
  let scaled = dmap[code] * bitcast<f32>(absmax2);
  return scaled + bitcast<f32>(offset);
}
// Linear j's words. The *G forms name only linears 0 and 1: a pipeline's layout holds every binding
// its entry point's call tree names, and with those `gateup` uses 8 storage buffers (3 outputs, X,
// 2 weights, 2 absmax), the default limit, so it runs on every device without the host checking.
fn absQ(j: u32, i: u32) -> u32 {
  if (j == 0u) { return A0[i]; }
  if (j == 1u) { return A1[i]; }
  return A2[i];
}
fn absG(j: u32, i: u32) -> u32 {
  if (j == 0u) { return A0[i]; }
  return A1[i];
}
fn wordQ(j: u32, i: u32) -> u32 {
  if (j == 0u) { return W0[i]; }
  if (j == 1u) { return W1[i]; }
  return W2[i];
}
fn wordG(j: u32, i: u32) -> u32 {
  if (j == 0u) { return W0[i]; }
  return W1[i];
}
// The scale of block b of linear j (of nb blocks).
fn scaleQ(j: u32, b: u32, nb: u32) -> f32 {
  if (DQ) {
    let q = (nb + 3u) / 4u;
    return dqScale((absQ(j, b >> 2u) >> (8u * (b & 3u))) & 255u, absQ(j, q + b / 256u), absQ(j, q + (nb + 255u) / 256u));
  }
  return bitcast<f32>(absQ(j, b));
}
fn scaleG(j: u32, b: u32, nb: u32) -> f32 {
  if (DQ) {
    let q = (nb + 3u) / 4u;
    return dqScale((absG(j, b >> 2u) >> (8u * (b & 3u))) & 255u, absG(j, q + b / 256u), absG(j, q + (nb + 255u) / 256u));
  }
  return bitcast<f32>(absG(j, b));
}
// dequant(W_j) at flat k .. k + 3 of row n, zero past the row's end or n >= N. With K % 4 == 0 the
// four are one half code word in one NF4 block (BS % 4 == 0); otherwise code by code.
fn weights4Q(j: u32, n: u32, N: u32, k: u32, nb: u32) -> vec4<f32> {
  var v = vec4<f32>(0.0);
  if (n >= N || k >= p.K) { return v; }
  let f = n * p.K + k;
  if ((p.K & 3u) == 0u) { return codes4(wordQ(j, f >> 3u), f) * scaleQ(j, f / BS, nb); }
  for (var c = 0u; c < 4u; c++) {
    if (k + c < p.K) { v[c] = nibble(wordQ(j, (f + c) >> 3u), f + c) * scaleQ(j, (f + c) / BS, nb); }
  }
  return v;
}
fn weights4G(j: u32, n: u32, N: u32, k: u32, nb: u32) -> vec4<f32> {
  var v = vec4<f32>(0.0);
  if (n >= N || k >= p.K) { return v; }
  let f = n * p.K + k;
  if ((p.K & 3u) == 0u) { return codes4(wordG(j, f >> 3u), f) * scaleG(j, f / BS, nb); }
  for (var c = 0u; c < 4u; c++) {
    if (k + c < p.K) { v[c] = nibble(wordG(j, (f + c) >> 3u), f + c) * scaleG(j, (f + c) / BS, nb); }
  }
  return v;
}
// X[m, k .. k + 3], zero out of range.
fn inputs4(m: u32, k: u32) -> vec4<f32> {
  var v = vec4<f32>(0.0);
  if (m >= p.M) { return v; }
  for (var c = 0u; c < 4u; c++) {
    if (k + c < p.K) { v[c] = X[m * p.K + k + c]; }
  }
  return v;
}

@compute @workgroup_size(WG)
fn qkv(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
       @builtin(local_invocation_index) lid: u32) {
  var tile = wid.x + wid.y * nwg.x;
  var j = 2u;
  var N = p.N2;
  if (tile < p.T0) { j = 0u; N = p.N0; } else if (tile < p.T0 + p.T1) { j = 1u; N = p.N1; tile -= p.T0; } else { tile -= p.T0 + p.T1; }
  let tilesN = (N + TN - 1u) / TN;
  // Past the end (grid rounding, or a linear with N = 0): m0 >= M, zeros loaded, nothing stored.
  var m0 = p.M;
  var n0 = 0u;
  if (tilesN > 0u) { m0 = (tile / tilesN) * TM; n0 = (tile % tilesN) * TN; }
  let tx = lid % 16u;         // columns 4tx .. 4tx + 3
  let ty = lid / 16u;         // rows 8ty .. 8ty + 7
  let nb = (N * p.K + BS - 1u) / BS;
  loadTables(lid);

  // Staging: row r of the tiles; pass s covers k = 4(kq + 2s) .. + 3 of the step (conflict-free stores).
  let r = lid % 64u;
  let kq = lid / 64u;
  var acc: array<vec4<f32>, 8>;
  for (var k0 = 0u; k0 < p.K; k0 += TK) {
    for (var s = 0u; s < TK / 8u; s++) {
      let g = kq + 2u * s;
      let kb = k0 + 4u * g;
      let xv = inputs4(m0 + r, kb);
      let wv = weights4Q(j, n0 + r, N, kb, nb);
      for (var c = 0u; c < 4u; c++) {
        Xs[(4u * g + c) * Q + r / 4u][r % 4u] = xv[c];
        Ws[(4u * g + c) * Q + r / 4u][r % 4u] = wv[c];
      }
    }
    workgroupBarrier();
    for (var k = 0u; k < TK; k++) {
      let a0 = Xs[k * Q + 2u * ty];
      let a1 = Xs[k * Q + 2u * ty + 1u];
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
    for (var jj = 0u; jj < 4u; jj++) {
      let n = n0 + 4u * tx + jj;
      if (m < p.M && n < N) {
        let o = m * N + n;
        if (j == 0u) { Y0[o] = acc[i][jj]; } else if (j == 1u) { Y1[o] = acc[i][jj]; } else { Y2[o] = acc[i][jj]; }
      }
    }
  }
}

@compute @workgroup_size(WG)
fn gateup(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
          @builtin(local_invocation_index) lid: u32) {
  let N = p.N0;
  let tilesN = (N + TN - 1u) / TN;
  let tile = wid.x + wid.y * nwg.x;
  let m0 = (tile / tilesN) * TM;
  let n0 = (tile % tilesN) * TN;
  let tx = lid % 16u;         // columns 4tx .. 4tx + 3
  let ty = lid / 16u;         // rows 8ty .. 8ty + 7
  let nb = (N * p.K + BS - 1u) / BS;
  loadTables(lid);

  let r = lid % 64u;
  let kq = lid / 64u;
  var accG: array<vec4<f32>, 8>;
  var accU: array<vec4<f32>, 8>;
  for (var k0 = 0u; k0 < p.K; k0 += TK) {
    for (var s = 0u; s < TK / 8u; s++) {
      let g = kq + 2u * s;
      let kb = k0 + 4u * g;
      let xv = inputs4(m0 + r, kb);
      let gv = weights4G(0u, n0 + r, N, kb, nb);
      let uv = weights4G(1u, n0 + r, N, kb, nb);
      for (var c = 0u; c < 4u; c++) {
        Xs[(4u * g + c) * Q + r / 4u][r % 4u] = xv[c];
        Ws[(4u * g + c) * Q + r / 4u][r % 4u] = gv[c];
        Vs[(4u * g + c) * Q + r / 4u][r % 4u] = uv[c];
      }
    }
    workgroupBarrier();
    for (var k = 0u; k < TK; k++) {
      let a0 = Xs[k * Q + 2u * ty];
      let a1 = Xs[k * Q + 2u * ty + 1u];
      let b = Ws[k * Q + tx];
      let c = Vs[k * Q + tx];
      for (var i = 0u; i < 4u; i++) {
        accG[i] = fma(vec4<f32>(a0[i]), b, accG[i]);
        accU[i] = fma(vec4<f32>(a0[i]), c, accU[i]);
        accG[i + 4u] = fma(vec4<f32>(a1[i]), b, accG[i + 4u]);
        accU[i + 4u] = fma(vec4<f32>(a1[i]), c, accU[i + 4u]);
      }
    }
    workgroupBarrier();
  }

  for (var i = 0u; i < 8u; i++) {
    let m = m0 + 8u * ty + i;
    for (var jj = 0u; jj < 4u; jj++) {
      let n = n0 + 4u * tx + jj;
      if (m < p.M && n < N) {
        let o = m * N + n;
        let g = accG[i][jj];
        let u = accU[i][jj];
        Y0[o] = g;
        Y1[o] = u;
        Y2[o] = g * sigmoid(g) * u;
      }
    }
  }
}
