// Causal grouped-query attention against a KV cache, forward only (inference, batch 1):
//   o[i,h,:] = sum_{j <= pos0+i} softmax_j(q[i,h,:] · k[j,g,:] · scale) v[j,g,:],  g = h / (H / Hkv)
// for Tn new query rows at positions pos0 .. pos0+Tn-1. Shapes: q, o (Tn, H, D); k, v (P, Hkv, D),
// the cache, of which rows 0 .. pos0+Tn-1 are filled (the host has already copied the new rows in).
// Same maths as attention_forward.wgsl at pos0 = 0 (HF eager attention, repeat_kv), minus the lse,
// which only the backward pass needs. B = 1: generation runs one sequence at a time.
// With a sliding window W > 0 the sum runs over pos0 + i - W < j <= pos0 + i (0 = full causal).
// With a softcap c > 0 (Gemma 2) each score is c·tanh(s / c) before the softmax.
// Version 1, split-keys within a workgroup (flash-decoding's idea, without the cross-workgroup
// split): one workgroup of WG threads per (query row, head), so the decode case (Tn = 1) still puts
// WG threads on every head. Keys are walked in tiles of WG: thread t scores key j0+t (a full dot
// with the q row held in workgroup memory), every thread then reads the tile's WG scores to get the
// same running max m (uniform across the workgroup, so partial sums never need a rescale when they
// are combined), and for the V product the threads are laid out as GROUPS groups of D4 lanes: lane
// c of group gi owns the vec4 column c and sums keys gi, gi+GROUPS, ... of the tile, so V rows are
// read contiguously across lanes. At the end the GROUPS partial accumulators and sums are added in
// workgroup memory. No (Tn, P) matrix exists anywhere; fully masked tiles are never visited.
// Trade-off noted: with few heads and a long context, flash-decoding would also split the keys
// across workgroups (a second reduction pass); at the sizes this app runs, H workgroups suffice.

override WG: u32 = 64;          // threads per workgroup = keys per tile
override D: u32 = 64;           // head dim, a multiple of 4, with D / 4 <= WG
override D4: u32 = D / 4u;
override GROUPS: u32 = WG / D4; // key groups of the V product

// exp(NEG_BIG - m) underflows to 0, and unlike -inf it never produces inf - inf = NaN.
const NEG_BIG: f32 = -3.0e38;

struct Params {
  Tn: u32,
  H: u32,
  Hkv: u32,
  pos0: u32,
  window: u32,  // sliding window W, 0 = none
  scale: f32,
  softcap: f32, // attention-logit softcap c (c·tanh(s / c)), 0 = none
}

@group(0) @binding(0) var<uniform> p: Params;

// tanh from one exp of a non-positive argument: no overflow to NaN for large scores.
fn tanh_safe(x: f32) -> f32 {
  let e = exp(-2.0 * abs(x));
  return sign(x) * (1.0 - e) / (1.0 + e);
}
@group(0) @binding(1) var<storage, read_write> o: array<vec4f>;  // (Tn, H, D)
@group(0) @binding(2) var<storage, read> q: array<vec4f>;        // (Tn, H, D)
@group(0) @binding(3) var<storage, read> k: array<vec4f>;        // (P, Hkv, D)
@group(0) @binding(4) var<storage, read> v: array<vec4f>;        // (P, Hkv, D)

var<workgroup> q_s: array<vec4f, D4>;    // this row's q, pre-scaled
var<workgroup> s_tile: array<f32, WG>;   // the tile's scores
var<workgroup> acc_s: array<vec4f, WG>;  // final reduction of the groups' accumulators
var<workgroup> l_s: array<f32, WG>;      // ... and of their sums

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let w = wid.x + wid.y * nwg.x;
  // Workgroups past the end (the 2-D grid rounds up) run with an empty key range and store nothing:
  // no early return, every invocation must reach the barriers.
  let wg_live = w < p.Tn * p.H;
  let i = w / p.H;
  let h = w % p.H;
  let g = h / (p.H / p.Hkv);
  var end = 0u;  // keys begin .. end-1 are visible to this row
  if (wg_live) { end = p.pos0 + i + 1u; }
  // With a sliding window W, position pos0 + i sees keys from pos0 + i + 1 - W on.
  var begin = 0u;
  if (p.window > 0u && end > p.window) { begin = end - p.window; }

  let q_base = (i * p.H + h) * D4;
  for (var c = lid; c < D4; c += WG) {
    var qq = vec4f(0.0);
    if (wg_live) { qq = q[q_base + c] * p.scale; }  // fold the scale into q once
    q_s[c] = qq;
  }
  workgroupBarrier();

  let gi = lid / D4;
  let lane = lid % D4;
  let v_live = gi < GROUPS;  // threads past GROUPS * D4 only score keys
  var m = NEG_BIG;
  var l = 0.0;
  var acc = vec4f(0.0);
  for (var j0 = begin; j0 < end; j0 += WG) {
    let j = j0 + lid;
    var s = NEG_BIG;
    if (j < end) {
      let kb = (j * p.Hkv + g) * D4;
      var dot4 = vec4f(0.0);
      for (var c = 0u; c < D4; c++) { dot4 += q_s[c] * k[kb + c]; }
      s = dot4.x + dot4.y + dot4.z + dot4.w;
      if (p.softcap > 0.0) { s = p.softcap * tanh_safe(s / p.softcap); }
    }
    s_tile[lid] = s;
    workgroupBarrier();

    let n = min(WG, end - j0);  // >= 1: j0 < end
    var m_tile = NEG_BIG;
    for (var jj = 0u; jj < n; jj++) { m_tile = max(m_tile, s_tile[jj]); }
    // Every thread computes the same m_new, so all partial (acc, l) share one reference max.
    let m_new = max(m, m_tile);
    let alpha = exp(m - m_new);
    acc *= alpha;
    l *= alpha;
    if (v_live) {
      for (var jj = gi; jj < n; jj += GROUPS) {
        let pj = exp(s_tile[jj] - m_new);
        l += pj;
        acc += pj * v[((j0 + jj) * p.Hkv + g) * D4 + lane];
      }
    }
    m = m_new;
    workgroupBarrier();  // the next tile overwrites s_tile
  }

  acc_s[lid] = acc;
  l_s[lid] = l;
  workgroupBarrier();
  if (wg_live && lid < D4) {
    var a = vec4f(0.0);
    var sum = 0.0;
    for (var r = 0u; r < GROUPS; r++) {
      a += acc_s[r * D4 + lid];
      sum += l_s[r * D4];  // every lane of a group holds the group's sum; take lane 0's
    }
    // Key pos0 + i (the row's own) is visible to every row, so sum >= 1 (its term is exp(s - max) with one s = max).
    o[q_base + lid] = a / sum;
  }
}
