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
// full causal attention. Packed rows: with `packed` set, a pair (t, j) also needs j >= t - positions[t]
// (the query's example start, example_start()), as in the forward.
// Shapes: dq, dO, q, o (B, T, H, D); dk, dv, k, v (B, T, Hkv, D); lse (B, H, T).
// KV head g serves Q heads g*n_rep .. (g+1)*n_rep-1. D is a pipeline override, D % 4 == 0.
// Version 3, flash-attention-2 backward as two entry points (WGSL has no float atomics, so each
// output has exactly one writer). Dsum is not a dispatch of its own (version 2's `preprocess`): each
// reader forms it from the dO and o rows it stages, with the same sum order, so every value is the
// same; dkv_main recomputes a query row's Dsum once per key block that sees it, D multiply-adds per
// row against the KB·D·4 of the tile's other work.
//   dq_main     one workgroup per (b, h, ROWS query rows), one thread per query row; K/V tiles in
//               workgroup memory, the loop stops at the block's last query (causal bound).
//   dkv_main    one workgroup per (b, g, KB key rows), KT threads per key row (KB·KT threads). The
//               block's k (pre-scaled) and v rows are staged once in workgroup memory; for each of the
//               group's n_rep query heads and each tile of QB query rows (from the block's first key
//               on: earlier queries cannot see it) the workgroup stages q, dO, lse and forms Dsum, computes the
//               KB x QB probabilities P and dS into workgroup memory (a few pairs per thread), then
//               each thread adds P·dO and dS·q into the at most PER vec4 of dv, dk it owns (columns
//               c = lid % KT + KT·i of its key row). Version 1 ran one thread per key row with k, v, dk,
//               dv in registers (4 x 64 vec4 each) and 64-row blocks: 64 workgroups at Llama-3.2-1B
//               shapes (T = 512, Hkv = 8); KB = 16 gives 256, each thread holding 2·PER vec4.

override ROWS: u32 = 64;       // rows (= threads) per workgroup: query rows in dq, key rows in dkv
override TILE: u32 = 16;       // rows per workgroup-memory tile: keys in dq, queries in dkv
override D: u32 = 64;          // head dim, a multiple of 4, at most 4 * MAX_D4
override D4: u32 = D / 4u;
override TILE4: u32 = TILE * D4;

const MAX_D4: u32 = 64u;       // capacity of the private row arrays: D <= 256
// dkv_main's blocking (the host sizes KB, QB to the device's workgroup memory; KT = ceil(D4 / PER)).
override KB: u32 = 16;         // key rows per workgroup
override QB: u32 = 8;          // query rows per staged tile
override KT: u32 = 4;          // threads per key row
const PER: u32 = 4u;           // vec4 of dk (and of dv) per thread: KT * PER >= D4

struct Params {
  B: u32,
  T: u32,
  H: u32,
  Hkv: u32,
  window: u32,  // sliding window W, 0 = none
  packed: u32,  // 1: mask by example using `positions`; 0: `positions` is a placeholder, never read
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
@group(0) @binding(11) var<storage, read> positions: array<u32>;    // (B, T), packed rows only

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

// dq's K and V tiles (dkv_main stages into its own arrays below).
var<workgroup> tile_a: array<vec4f, TILE4>;  // (TILE, D): k
var<workgroup> tile_b: array<vec4f, TILE4>;  // (TILE, D): v

// Packed rows: the first key query t of row b may see, t - positions[b, t] (0 when not packed; a
// position above t leaves plain causal). The one place the example mask lives in this shader.
fn example_start(b: u32, t: u32) -> u32 {
  if (p.packed == 0u) { return 0u; }
  return t - min(positions[b * p.T + t], t);
}

// dkv_main's tiles: the key block (KB, D) and the query tile (QB, D), its lse and Dsum, and the
// (KB, QB) probabilities and their dS.
var<workgroup> kb_k: array<vec4f, KB * D4>;
var<workgroup> kb_v: array<vec4f, KB * D4>;
var<workgroup> qt_q: array<vec4f, QB * D4>;
var<workgroup> qt_do: array<vec4f, QB * D4>;
var<workgroup> qt_lse: array<f32, QB>;
var<workgroup> qt_dsum: array<f32, QB>;
var<workgroup> pt_p: array<f32, KB * QB>;
var<workgroup> pt_ds: array<f32, KB * QB>;

fn dot_row(x: ptr<function, array<vec4f, MAX_D4>>, base: u32, from_a: bool) -> f32 {
  var acc = vec4f(0.0);
  if (from_a) {
    for (var c = 0u; c < D4; c++) { acc += (*x)[c] * tile_a[base + c]; }
  } else {
    for (var c = 0u; c < D4; c++) { acc += (*x)[c] * tile_b[base + c]; }
  }
  return acc.x + acc.y + acc.z + acc.w;
}

// Dsum of the query row whose (dO, o) row starts at vec4 `base`: sum_d dO[d] o[d], in one order.
fn dsum_row(base: u32) -> f32 {
  var acc = vec4f(0.0);
  for (var c = 0u; c < D4; c++) { acc += dO[base + c] * o[base + c]; }
  return acc.x + acc.y + acc.z + acc.w;
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
    Dt = dsum_row(base);
  }

  var kv_end = 0u;
  if (wg_live) { kv_end = min(p.T, (blk + 1u) * ROWS); }
  // Window bound: the block's first query sees no key before first + 1 - W; this row none before lo.
  var kv_begin = 0u;
  if (p.window > 0u && blk * ROWS + 1u > p.window) { kv_begin = blk * ROWS + 1u - p.window; }
  var lo = 0u;
  if (p.window > 0u && t + 1u > p.window) { lo = t + 1u - p.window; }
  if (live) { lo = max(lo, example_start(b, t)); }  // nor any before its example's first token
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

@compute @workgroup_size(KB * KT)
fn dkv_main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
            @builtin(local_invocation_index) lid: u32) {
  let NT = KB * KT;
  let blocks = (p.T + KB - 1u) / KB;
  let w = wid.x + wid.y * nwg.x;
  let wg_live = w < p.B * p.Hkv * blocks;  // no early return: all invocations reach the barriers
  let blk = w % blocks;
  let g = (w / blocks) % p.Hkv;
  let b = w / (blocks * p.Hkv);
  let n_rep = p.H / p.Hkv;
  let j0 = blk * KB;                        // the block's first key

  // Stage the key block: k pre-scaled, v; zero rows past T.
  for (var i = lid; i < KB * D4; i += NT) {
    let j = j0 + i / D4;
    var kk = vec4f(0.0);
    var vv = vec4f(0.0);
    if (wg_live && j < p.T) {
      let src = ((b * p.T + j) * p.Hkv + g) * D4 + i % D4;
      kk = k[src] * p.scale;
      vv = v[src];
    }
    kb_k[i] = kk;
    kb_v[i] = vv;
  }

  // This thread's outputs: key row jl of the block, columns c = cl + KT * i.
  let jl = lid / KT;
  let cl = lid % KT;
  var dk_acc: array<vec4f, PER>;
  var dv_acc: array<vec4f, PER>;
  for (var i = 0u; i < PER; i++) {
    dk_acc[i] = vec4f(0.0);
    dv_acc[i] = vec4f(0.0);
  }

  // Causal bound: queries before the block's first key see none of its keys; with a window, queries
  // from the block's last key + W on see none either.
  var q_begin = p.T;
  if (wg_live) { q_begin = j0; }
  var q_end = p.T;
  if (p.window > 0u) { q_end = min(p.T, j0 + KB - 1u + p.window); }
  for (var r = 0u; r < n_rep; r++) {
    let h = g * n_rep + r;
    let stat = (b * p.H + h) * p.T;
    for (var t0 = q_begin; t0 < q_end; t0 += QB) {
      workgroupBarrier();  // the previous tile's readers are done (and the key block is staged)
      for (var i = lid; i < QB * D4; i += NT) {
        let t = t0 + i / D4;
        var qq = vec4f(0.0);
        var dd = vec4f(0.0);
        if (t < p.T) {
          let src = ((b * p.T + t) * p.H + h) * D4 + i % D4;
          qq = q[src];
          dd = dO[src];
        }
        qt_q[i] = qq;
        qt_do[i] = dd;
      }
      for (var i = lid; i < QB; i += NT) {
        let t = t0 + i;
        var l = 0.0;
        var ds = 0.0;
        if (t < p.T) {
          l = lse[stat + t];
          ds = dsum_row(((b * p.T + t) * p.H + h) * D4);
        }
        qt_lse[i] = l;
        qt_dsum[i] = ds;
      }
      workgroupBarrier();
      // P and dS of the tile's (key, query) pairs; 0 where the pair is masked (causal, window, T, example).
      for (var e = lid; e < KB * QB; e += NT) {
        let jj = e / QB;
        let tt = e % QB;
        let j = j0 + jj;
        let t = t0 + tt;
        var pv = 0.0;
        var dsv = 0.0;
        // (j >= example_start: query t is not in a later packed example.)
        if (j < p.T && t < p.T && t >= j && (p.window == 0u || t < j + p.window) && j >= example_start(b, t)) {
          var sk = vec4f(0.0);
          var sv = vec4f(0.0);
          for (var c = 0u; c < D4; c++) {
            sk += kb_k[jj * D4 + c] * qt_q[tt * D4 + c];
            sv += kb_v[jj * D4 + c] * qt_do[tt * D4 + c];
          }
          let ps = prob_and_slope(sk.x + sk.y + sk.z + sk.w, qt_lse[tt]);
          pv = ps.x;
          dsv = pv * (sv.x + sv.y + sv.z + sv.w - qt_dsum[tt]) * ps.y;
        }
        pt_p[e] = pv;
        pt_ds[e] = dsv;
      }
      workgroupBarrier();
      for (var tt = 0u; tt < QB; tt++) {
        let pv = pt_p[jl * QB + tt];
        let dsv = pt_ds[jl * QB + tt];
        for (var i = 0u; i < PER; i++) {
          let c = cl + KT * i;
          if (c < D4) {
            dv_acc[i] += pv * qt_do[tt * D4 + c];
            dk_acc[i] += dsv * qt_q[tt * D4 + c];
          }
        }
      }
    }
  }
  let j = j0 + jl;
  if (wg_live && j < p.T) {
    let base = ((b * p.T + j) * p.Hkv + g) * D4;
    for (var i = 0u; i < PER; i++) {
      let c = cl + KT * i;
      if (c < D4) {
        dk[base + c] = dk_acc[i] * p.scale;
        dv[base + c] = dv_acc[i];
      }
    }
  }
}
