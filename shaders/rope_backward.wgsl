// RoPE backward: the transpose of rope_forward's per-pair rotation (a rotation by -angle), in place.
// Forward y = x*cos + rotate_half(x)*sin, so dx = dy*cos + rotate_half^T(dy*sin) with
// rotate_half^T(v) = cat(v[D/2:], -v[:D/2]):
//   dx[j]       = dy[j] * cos[p, j] + dy[j + D/2] * sin[p, j]
//   dx[j + D/2] = dy[j + D/2] * cos[p, j] - dy[j] * sin[p, j]
// Reference: autograd through transformers apply_rotary_pos_emb (fixtures/goldens/rope.json).
// Shapes: dx (B, T, Hn, D) holds dy on entry and dx on exit; positions (B*T) u32; cos, sin (P, D/2).
// A position >= P leaves the pair unchanged, as in the forward pass.
// Version 1: one invocation per (token, head, pair), tables from the CPU.

override WG: u32 = 256;

struct Params {
  B: u32,
  T: u32,
  Hn: u32,
  D: u32,
  P: u32,
  Hq: u32,  // qk: heads of dq (Hn is dk's)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> dx: array<f32>;   // (B, T, Hn, D): dy in, dx out
@group(0) @binding(2) var<storage, read> positions: array<u32>;  // (B * T)
@group(0) @binding(3) var<storage, read> cos_t: array<f32>;      // (P, D/2)
@group(0) @binding(4) var<storage, read> sin_t: array<f32>;      // (P, D/2)
@group(0) @binding(5) var<storage, read_write> dq: array<f32>;   // qk: (B, T, Hq, D), dy in, dx out

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * WG + lid;
  let half = p.D / 2u;
  if (i >= p.B * p.T * p.Hn * half) { return; }  // no barriers in this kernel
  let row = i / half;
  let j = i - row * half;
  let pos = positions[row / p.Hn];
  if (pos >= p.P) { return; }
  let c = cos_t[pos * half + j];
  let s = sin_t[pos * half + j];
  let a = row * p.D + j;
  let d1 = dx[a];
  let d2 = dx[a + half];
  dx[a] = d1 * c + d2 * s;
  dx[a + half] = d2 * c - d1 * s;
}

// Entry `qk`: dq (B, T, Hq, D) and dk (B, T, Hn, D, bound as dx) in one dispatch, exactly as two
// `main` dispatches would: invocations below B·T·Hq·D/2 take dq's pairs, the rest dk's.
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
    let d1 = dq[a];
    let d2 = dq[a + half];
    dq[a] = d1 * c + d2 * s;
    dq[a + half] = d2 * c - d1 * s;
  } else {
    let d1 = dx[a];
    let d2 = dx[a + half];
    dx[a] = d1 * c + d2 * s;
    dx[a + half] = d2 * c - d1 * s;
  }
}
