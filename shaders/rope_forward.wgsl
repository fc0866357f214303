// RoPE forward, HF convention (transformers modeling_llama.apply_rotary_pos_emb with rotate_half on
// split halves, not interleaved): element j of a head pairs with element j + D/2.
//   y[j]       = x[j] * cos[p, j] - x[j + D/2] * sin[p, j]
//   y[j + D/2] = x[j + D/2] * cos[p, j] + x[j] * sin[p, j]
// which is y = x*cos + rotate_half(x)*sin with HF's cos = cat(cos_half, cos_half).
// Shapes: x (B, T, Hn, D), rotated in place (Hn = H for q, Hkv for k); positions (B*T) u32, so
// packed sequences can restart at 0; cos, sin (P, D/2) from ropeTables() in rope_forward.ts, with
// attention_scaling already applied. P = the number of table rows (max positions).
// A position >= P would read past the table: that pair is left unchanged (the data pipeline
// validates positions upstream; robustness here only guarantees no out-of-bounds read).
// Version 1: one invocation per (token, head, pair). The tables are precomputed on the CPU in f64
// because WGSL's cos/sin are only accurate inside [-pi, pi] and angles reach pos * inv_freq ~ 1e5.
// Entry `append` (decoding, B = 1): q (T, Hq, D) rotated in place as `main` does, and in the same
// dispatch the rotation of k written into the KV cache's K at each token's position row instead of
// in place, and v's rows copied into the cache's V at the same rows. It replaces two rope dispatches
// and two buffer copies, each copy ending the compute pass; the
// rows come from `positions`, so the uniform stays the same from token to token. A position past
// the cache's rows writes nothing.

override WG: u32 = 256;

struct Params {
  B: u32,
  T: u32,
  Hn: u32,
  D: u32,
  P: u32,
  Hq: u32,  // append: query heads (Hn is the key/value heads), Hq >= Hn
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;    // (B, T, Hn, D) in place
@group(0) @binding(2) var<storage, read> positions: array<u32>;  // (B * T)
@group(0) @binding(3) var<storage, read> cos_t: array<f32>;      // (P, D/2)
@group(0) @binding(4) var<storage, read> sin_t: array<f32>;      // (P, D/2)
@group(0) @binding(5) var<storage, read_write> kc: array<f32>;   // append: K cache (positions, Hn, D)
@group(0) @binding(6) var<storage, read> v: array<f32>;          // append: (T, Hn, D)
@group(0) @binding(7) var<storage, read_write> vc: array<f32>;   // append: V cache (positions, Hn, D)
@group(0) @binding(8) var<storage, read_write> q: array<f32>;    // append: (T, Hq, D) in place

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * WG + lid;
  let half = p.D / 2u;
  if (i >= p.B * p.T * p.Hn * half) { return; }  // no barriers in this kernel
  let row = i / half;           // (b, t, h) flattened
  let j = i - row * half;
  let pos = positions[row / p.Hn];
  if (pos >= p.P) { return; }
  let c = cos_t[pos * half + j];
  let s = sin_t[pos * half + j];
  let a = row * p.D + j;
  let x1 = x[a];
  let x2 = x[a + half];
  x[a] = x1 * c - x2 * s;
  x[a + half] = x2 * c + x1 * s;
}

@compute @workgroup_size(WG)
fn append(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
          @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * WG + lid;
  let half = p.D / 2u;
  if (i >= p.T * p.Hq * half) { return; }
  let qrow = i / half;           // (t, head) over the query heads
  let j = i - qrow * half;
  let tok = qrow / p.Hq;
  let h = qrow - tok * p.Hq;
  let pos = positions[tok];
  let inTable = pos < p.P;
  var c = 1.0;
  var s = 0.0;
  if (inTable) {
    c = cos_t[pos * half + j];
    s = sin_t[pos * half + j];
  }
  let qa = qrow * p.D + j;
  if (inTable) {
    let q1 = q[qa];
    let q2 = q[qa + half];
    q[qa] = q1 * c - q2 * s;
    q[qa + half] = q2 * c + q1 * s;
  }
  if (h >= p.Hn) { return; }
  let a = (tok * p.Hn + h) * p.D + j;
  let o = (pos * p.Hn + h) * p.D + j;  // (pos, head, j) of the cache
  if (pos >= arrayLength(&kc) / (p.Hn * p.D) || pos >= arrayLength(&vc) / (p.Hn * p.D)) { return; }
  vc[o] = v[a];
  vc[o + half] = v[a + half];
  let x1 = x[a];
  let x2 = x[a + half];
  if (!inTable) {
    kc[o] = x1;
    kc[o + half] = x2;
    return;
  }
  kc[o] = x1 * c - x2 * s;
  kc[o + half] = x2 * c + x1 * s;
}

// Entry `qk` (training, prompts): q (B, T, Hq, D) and k (B, T, Hn, D) rotated in place in one
// dispatch, exactly as two `main` dispatches would: invocations below B·T·Hq·D/2 take q's pairs, the
// rest k's (bound as x).
@compute @workgroup_size(WG)
fn qk(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
      @builtin(local_invocation_index) lid: u32) {
  var i = (wid.x + wid.y * nwg.x) * WG + lid;
  let half = p.D / 2u;
  let nq = p.B * p.T * p.Hq * half;
  let isQ = i < nq;
  var heads = p.Hq;
  if (!isQ) { i -= nq; heads = p.Hn; }
  if (i >= p.B * p.T * heads * half) { return; }  // no barriers in this kernel
  let row = i / half;
  let j = i - row * half;
  let pos = positions[row / heads];
  if (pos >= p.P) { return; }
  let c = cos_t[pos * half + j];
  let s = sin_t[pos * half + j];
  let a = row * p.D + j;
  if (isQ) {
    let x1 = q[a];
    let x2 = q[a + half];
    q[a] = x1 * c - x2 * s;
    q[a + half] = x2 * c + x1 * s;
  } else {
    let x1 = x[a];
    let x2 = x[a + half];
    x[a] = x1 * c - x2 * s;
    x[a + half] = x2 * c + x1 * s;
  }
}
