// Causal self-attention with grouped-query heads, backward (autograd of HF `eager_attention_forward`:
// repeat_kv, softmax(q kᵀ · scale + causal mask) in f32, · v). With s = q·k·scale and
// P[t,j] = exp(s[t,j] - lse[t]) recomputed from the saved lse (never stored):
//   Dsum[t]  = sum_d dO[t,d] o[t,d]                 (= sum_j P[t,j] dP[t,j])
//   dS[t,j]  = P[t,j] (dO[t]·v[j] - Dsum[t])
//   dq[t]    = scale · sum_{j<=t} dS[t,j] k[j]
//   dk[j]    = scale · sum_{h in group(g)} sum_{t>=j} dS[t,j] q[t]
//   dv[j]    =         sum_{h in group(g)} sum_{t>=j} P[t,j] dO[t]
// With a softcap c > 0 (Gemma 2) the softmax sees c·tanh(s / c): P uses the capped score and dS is
// multiplied by its derivative 1 - tanh²(s / c) before it reaches dq and dk.
// With a sliding window W > 0 the pairs are those with t - W < j <= t (as in the forward); W = 0 is
// full causal attention.
// Shapes: dq, dO, q, o (B, T, H, D); dk, dv, k, v (B, T, Hkv, D); lse, Dsum (B, H, T).
// KV head g serves Q heads g*n_rep .. (g+1)*n_rep-1. D is a pipeline override, D % 4 == 0.
// Version 1, flash-attention-2 backward as three entry points (torchlette's split; WGSL has no
// float atomics, so each output has exactly one writer):
//   preprocess  one thread per (b, h, t): Dsum.
//   dq_main     one workgroup per (b, h, ROWS query rows), one thread per query row; K/V tiles in
//               workgroup memory, the loop stops at the block's last query (causal bound).
//   dkv_main    one workgroup per (b, g, ROWS key rows), one thread per key row holding k, v, dk, dv in
//               registers; loops over the group's n_rep query heads inside the workgroup, and over
//               tiles of q, dO rows from the block's first key on (earlier queries cannot see it).

override ROWS: u32 = 64;       // rows (= threads) per workgroup: query rows in dq, key rows in dkv
override TILE: u32 = 16;       // rows per workgroup-memory tile: keys in dq, queries in dkv
override D: u32 = 64;          // head dim, a multiple of 4, at most 4 * MAX_D4
override D4: u32 = D / 4u;
override TILE4: u32 = TILE * D4;

const MAX_D4: u32 = 64u;       // capacity of the private row arrays: D <= 256

struct Params {
  B: u32,
  T: u32,
  H: u32,
  Hkv: u32,
  window: u32,  // sliding window W, 0 = none
  scale: f32,
  softcap: f32, // attention-logit softcap c, 0 = none
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> dq: array<vec4f>;    // (B, T, H, D)
@group(0) @binding(2) var<storage, read_write> dk: array<vec4f>;    // (B, T, Hkv, D)
@group(0) @binding(3) var<storage, read_write> dv: array<vec4f>;    // (B, T, Hkv, D)
@group(0) @binding(4) var<storage, read> dO: array<vec4f>;          // (B, T, H, D)
@group(0) @binding(5) var<storage, read> q: array<vec4f>;           // (B, T, H, D)
@group(0) @binding(6) var<storage, read> k: array<vec4f>;           // (B, T, Hkv, D)
@group(0) @binding(7) var<storage, read> v: array<vec4f>;           // (B, T, Hkv, D)
@group(0) @binding(8) var<storage, read> o: array<vec4f>;           // (B, T, H, D)
@group(0) @binding(9) var<storage, read> lse: array<f32>;           // (B, H, T)
// Scratch written by `preprocess`, read by `dq` and `dkv`.
@group(0) @binding(10) var<storage, read_write> Dsum: array<f32>;   // (B, H, T)

// tanh from one exp of a non-positive argument: no overflow to NaN for large scores.
fn tanh_safe(x: f32) -> f32 {
  let e = exp(-2.0 * abs(x));
  return sign(x) * (1.0 - e) / (1.0 + e);
}

// P = exp(score - lse) and the softcap's derivative for a raw (scaled) score: with softcap c the
// softmax saw c·tanh(s / c), whose derivative is 1 - tanh²(s / c); without, P = exp(s - lse), 1.
fn prob_and_slope(s: f32, L: f32) -> vec2f {
  if (p.softcap > 0.0) {
    let th = tanh_safe(s / p.softcap);
    return vec2f(exp(p.softcap * th - L), 1.0 - th * th);
  }
  return vec2f(exp(s - L), 1.0);
}

// dq stages K and V rows; dkv stages q and dO rows. Same sizes, so one pair of arrays serves both.
var<workgroup> tile_a: array<vec4f, TILE4>;  // (TILE, D): k in dq, q in dkv
var<workgroup> tile_b: array<vec4f, TILE4>;  // (TILE, D): v in dq, dO in dkv

fn dot_row(x: ptr<function, array<vec4f, MAX_D4>>, base: u32, from_a: bool) -> f32 {
  var acc = vec4f(0.0);
  if (from_a) {
    for (var c = 0u; c < D4; c++) { acc += (*x)[c] * tile_a[base + c]; }
  } else {
    for (var c = 0u; c < D4; c++) { acc += (*x)[c] * tile_b[base + c]; }
  }
  return acc.x + acc.y + acc.z + acc.w;
}

@compute @workgroup_size(ROWS)
fn preprocess(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
              @builtin(local_invocation_index) lid: u32) {
  // Row r = (b, h, t) in Dsum's (B, H, T) order.
  let r = (wid.x + wid.y * nwg.x) * ROWS + lid;
  if (r >= p.B * p.H * p.T) { return; }  // no barriers in this entry point
  let t = r % p.T;
  let h = (r / p.T) % p.H;
  let b = r / (p.T * p.H);
  let base = ((b * p.T + t) * p.H + h) * D4;
  var acc = vec4f(0.0);
  for (var c = 0u; c < D4; c++) { acc += dO[base + c] * o[base + c]; }
  Dsum[r] = acc.x + acc.y + acc.z + acc.w;
}

@compute @workgroup_size(ROWS)
fn dq_main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
           @builtin(local_invocation_index) lid: u32) {
  let blocks = (p.T + ROWS - 1u) / ROWS;
  let w = wid.x + wid.y * nwg.x;
  let wg_live = w < p.B * p.H * blocks;  // no early return: all invocations reach the barriers
  let blk = w % blocks;
  let h = (w / blocks) % p.H;
  let b = w / (blocks * p.H);
  let g = h / (p.H / p.Hkv);
  let t = blk * ROWS + lid;
  let live = wg_live && t < p.T;

  var qr: array<vec4f, MAX_D4>;
  var dor: array<vec4f, MAX_D4>;
  var acc: array<vec4f, MAX_D4>;
  let base = ((b * p.T + t) * p.H + h) * D4;
  for (var c = 0u; c < D4; c++) {
    if (live) {
      qr[c] = q[base + c] * p.scale;
      dor[c] = dO[base + c];
    }
    acc[c] = vec4f(0.0);
  }
  var L = 0.0;
  var Dt = 0.0;
  if (live) {
    L = lse[(b * p.H + h) * p.T + t];
    Dt = Dsum[(b * p.H + h) * p.T + t];
  }

  var kv_end = 0u;
  if (wg_live) { kv_end = min(p.T, (blk + 1u) * ROWS); }
  // Window bound: the block's first query sees no key before first + 1 - W; this row none before lo.
  var kv_begin = 0u;
  if (p.window > 0u && blk * ROWS + 1u > p.window) { kv_begin = blk * ROWS + 1u - p.window; }
  var lo = 0u;
  if (p.window > 0u && t + 1u > p.window) { lo = t + 1u - p.window; }
  for (var j0 = kv_begin; j0 < kv_end; j0 += TILE) {
    for (var i = lid; i < TILE4; i += ROWS) {
      let j = j0 + i / D4;
      var kk = vec4f(0.0);
      var vv = vec4f(0.0);
      if (j < p.T) {
        let src = ((b * p.T + j) * p.Hkv + g) * D4 + i % D4;
        kk = k[src];
        vv = v[src];
      }
      tile_a[i] = kk;
      tile_b[i] = vv;
    }
    workgroupBarrier();
    if (live && j0 <= t && j0 + TILE > lo) {
      let n = min(TILE, t + 1u - j0);
      let jb = select(0u, lo - j0, lo > j0);
      for (var jj = jb; jj < n; jj++) {
        let ps = prob_and_slope(dot_row(&qr, jj * D4, true), L);
        let pj = ps.x;
        let ds = pj * (dot_row(&dor, jj * D4, false) - Dt) * ps.y;
        for (var c = 0u; c < D4; c++) { acc[c] += ds * tile_a[jj * D4 + c]; }
      }
    }
    workgroupBarrier();
  }
  if (live) {
    for (var c = 0u; c < D4; c++) { dq[base + c] = acc[c] * p.scale; }
  }
}

@compute @workgroup_size(ROWS)
fn dkv_main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
       @builtin(local_invocation_index) lid: u32) {
  let blocks = (p.T + ROWS - 1u) / ROWS;
  let w = wid.x + wid.y * nwg.x;
  let wg_live = w < p.B * p.Hkv * blocks;
  let blk = w % blocks;
  let g = (w / blocks) % p.Hkv;
  let b = w / (blocks * p.Hkv);
  let n_rep = p.H / p.Hkv;
  let j = blk * ROWS + lid;  // this thread's key row
  let live = wg_live && j < p.T;

  var kr: array<vec4f, MAX_D4>;
  var vr: array<vec4f, MAX_D4>;
  var dk_acc: array<vec4f, MAX_D4>;
  var dv_acc: array<vec4f, MAX_D4>;
  let base = ((b * p.T + j) * p.Hkv + g) * D4;
  for (var c = 0u; c < D4; c++) {
    if (live) {
      kr[c] = k[base + c] * p.scale;
      vr[c] = v[base + c];
    }
    dk_acc[c] = vec4f(0.0);
    dv_acc[c] = vec4f(0.0);
  }

  // Causal bound: queries before the block's first key see none of its keys; with a window, queries
  // from the block's last key + W on see none either.
  var q_begin = p.T;
  if (wg_live) { q_begin = blk * ROWS; }
  var q_end = p.T;
  if (p.window > 0u) { q_end = min(p.T, (blk + 1u) * ROWS - 1u + p.window); }
  // This key's last query (exclusive): j + W.
  var t_hi = p.T;
  if (p.window > 0u) { t_hi = min(p.T, j + p.window); }
  for (var r = 0u; r < n_rep; r++) {
    let h = g * n_rep + r;
    let stat = (b * p.H + h) * p.T;
    for (var t0 = q_begin; t0 < q_end; t0 += TILE) {
      for (var i = lid; i < TILE4; i += ROWS) {
        let t = t0 + i / D4;
        var qq = vec4f(0.0);
        var dd = vec4f(0.0);
        if (t < p.T) {
          let src = ((b * p.T + t) * p.H + h) * D4 + i % D4;
          qq = q[src];
          dd = dO[src];
        }
        tile_a[i] = qq;
        tile_b[i] = dd;
      }
      workgroupBarrier();
      if (live && t0 + TILE > j && t0 < t_hi) {
        // Queries t0 + tt with j <= t < t_hi; those before j (causal) or from j + W on (window) are
        // masked for this key.
        let tt_begin = select(0u, j - t0, j > t0);
        let tt_end = min(TILE, t_hi - t0);
        for (var tt = tt_begin; tt < tt_end; tt++) {
          let t = t0 + tt;
          let ps = prob_and_slope(dot_row(&kr, tt * D4, true), lse[stat + t]);
          let pt = ps.x;
          let ds = pt * (dot_row(&vr, tt * D4, false) - Dsum[stat + t]) * ps.y;
          for (var c = 0u; c < D4; c++) {
            dv_acc[c] += pt * tile_b[tt * D4 + c];
            dk_acc[c] += ds * tile_a[tt * D4 + c];
          }
        }
      }
      workgroupBarrier();
    }
  }
  if (live) {
    for (var c = 0u; c < D4; c++) {
      dk[base + c] = dk_acc[c] * p.scale;
      dv[base + c] = dv_acc[c];
    }
  }
}
