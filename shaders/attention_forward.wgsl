// Causal self-attention with grouped-query heads, forward (HF `eager_attention_forward` in
// modeling_llama.py: repeat_kv, softmax(q kᵀ · scale + causal mask) in f32, then · v):
//   o[b,t,h,:] = sum_{j<=t} softmax_j(q[b,t,h,:] · k[b,j,g,:] · scale) v[b,j,g,:],  g = h / (H / Hkv)
//   lse[b,h,t] = log sum_{j<=t} exp(q[b,t,h,:] · k[b,j,g,:] · scale), saved for the backward pass.
// With a sliding window W > 0 (Mistral, Qwen2's sliding layers; HF masking_utils'
// sliding_window_overlay) the sums run over t - W < j <= t instead; W = 0 is full causal attention.
// With a logit softcap c > 0 (Gemma 2's attn_logit_softcapping) each score becomes c·tanh(s / c)
// before the softmax; c = 0 leaves scores as they are.
// Packed rows (TRL's padding-free packing): with `packed` set, query t also sees no key before its
// example's start t - positions[b, t] (positions restart at 0 at each example), so examples packed
// in one row never attend to each other. See example_start().
// Shapes: q, o (B, T, H, D); k, v (B, T, Hkv, D); lse (B, H, T). KV head g serves Q heads
// g*n_rep .. (g+1)*n_rep-1 (repeat_kv). D is a pipeline override (the model's head_dim), D % 4 == 0.
// Version 1, flash-attention-2 style (after ORT's flash_attention.wgsl.template, loop-based smem
// path): one workgroup per (b, h, block of ROWS query rows), one thread per query row with its q row
// and o accumulator in registers; K/V tiles of KV_TILE keys staged in workgroup memory and read by
// every thread at the same address (a broadcast); online softmax with a running max m and sum l,
// rescaled once per tile. No T×T matrix exists anywhere. The KV loop stops at the workgroup's last
// query row (causal bound), so fully masked tiles are never loaded.

override ROWS: u32 = 64;       // query rows (= threads) per workgroup
override KV_TILE: u32 = 16;    // keys per tile; the host fits 2 * KV_TILE * D * 4 bytes in workgroup memory
override D: u32 = 64;          // head dim, a multiple of 4, at most 4 * MAX_D4
override D4: u32 = D / 4u;
override TILE4: u32 = KV_TILE * D4;

// Private arrays need a constant length; these are capacities, the loops run to the overrides D4 and
// KV_TILE, so a compiler that specialises on the overrides can drop what is unused.
const MAX_D4: u32 = 64u;       // D <= 256 (Gemma)
const MAX_KV_TILE: u32 = 32u;
// exp(NEG_BIG - m) underflows to 0, and unlike -inf it never produces inf - inf = NaN.
const NEG_BIG: f32 = -3.0e38;

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

// tanh from one exp of a non-positive argument: it cannot overflow for any score, where
// sinh/cosh-based tanh can give inf/inf = NaN.
fn tanh_safe(x: f32) -> f32 {
  let e = exp(-2.0 * abs(x));
  return sign(x) * (1.0 - e) / (1.0 + e);
}

fn cap_score(s: f32) -> f32 {
  if (p.softcap > 0.0) { return p.softcap * tanh_safe(s / p.softcap); }
  return s;
}
@group(0) @binding(1) var<storage, read_write> o: array<vec4f>;   // (B, T, H, D)
@group(0) @binding(2) var<storage, read_write> lse: array<f32>;   // (B, H, T)
@group(0) @binding(3) var<storage, read> q: array<vec4f>;         // (B, T, H, D)
@group(0) @binding(4) var<storage, read> k: array<vec4f>;         // (B, T, Hkv, D)
@group(0) @binding(5) var<storage, read> v: array<vec4f>;         // (B, T, Hkv, D)
@group(0) @binding(6) var<storage, read> positions: array<u32>;   // (B, T)

var<workgroup> k_tile: array<vec4f, TILE4>;  // (KV_TILE, D)
var<workgroup> v_tile: array<vec4f, TILE4>;  // (KV_TILE, D)

// The first key query t of row b may see by example: t - positions[b, t] (0 when not packed). The
// min() keeps a position larger than t (a row that does not start an example) to plain causal.
fn example_start(b: u32, t: u32) -> u32 {
  if (p.packed == 0u) { return 0u; }
  return t - min(positions[b * p.T + t], t);
}

@compute @workgroup_size(ROWS)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let blocks = (p.T + ROWS - 1u) / ROWS;
  let w = wid.x + wid.y * nwg.x;
  // Workgroups past the end (the 2-D grid rounds up) run the loops with nothing to do and store
  // nothing: no early return, every invocation must reach the barriers.
  let wg_live = w < p.B * p.H * blocks;
  let blk = w % blocks;
  let h = (w / blocks) % p.H;
  let b = w / (blocks * p.H);
  let g = h / (p.H / p.Hkv);
  let t = blk * ROWS + lid;
  let live = wg_live && t < p.T;

  var qr: array<vec4f, MAX_D4>;
  var acc: array<vec4f, MAX_D4>;
  let q_base = ((b * p.T + t) * p.H + h) * D4;
  for (var c = 0u; c < D4; c++) {
    if (live) { qr[c] = q[q_base + c] * p.scale; }  // fold the scale into q once
    acc[c] = vec4f(0.0);
  }
  var m = NEG_BIG;
  var l = 0.0;
  var s: array<f32, MAX_KV_TILE>;

  // Causal bound: the last query of this block sees keys 0 ..= last; with a window, the first query
  // of the block sees none before first + 1 - W, so tiles before that are never loaded.
  var kv_end = 0u;
  if (wg_live) { kv_end = min(p.T, (blk + 1u) * ROWS); }
  var kv_begin = 0u;
  if (p.window > 0u && blk * ROWS + 1u > p.window) { kv_begin = blk * ROWS + 1u - p.window; }
  // This row's first visible key: the later of the window's and its example's start.
  var lo = 0u;
  if (p.window > 0u && t + 1u > p.window) { lo = t + 1u - p.window; }
  if (live) { lo = max(lo, example_start(b, t)); }
  for (var j0 = kv_begin; j0 < kv_end; j0 += KV_TILE) {
    // Stage K and V rows j0 .. j0+KV_TILE-1 of KV head g; rows past T are zero-filled.
    for (var i = lid; i < TILE4; i += ROWS) {
      let j = j0 + i / D4;
      var kk = vec4f(0.0);
      var vv = vec4f(0.0);
      if (j < p.T) {
        let src = ((b * p.T + j) * p.Hkv + g) * D4 + i % D4;
        kk = k[src];
        vv = v[src];
      }
      k_tile[i] = kk;
      v_tile[i] = vv;
    }
    workgroupBarrier();

    if (live && j0 <= t && j0 + KV_TILE > lo) {
      let n = min(KV_TILE, t + 1u - j0);  // keys j0 .. j0+n-1 are <= t (and < T since t < T)
      let jb = select(0u, lo - j0, lo > j0);  // keys before lo are outside the window
      var m_tile = NEG_BIG;
      for (var jj = jb; jj < n; jj++) {
        var dot4 = vec4f(0.0);
        for (var c = 0u; c < D4; c++) { dot4 += qr[c] * k_tile[jj * D4 + c]; }
        let sj = cap_score(dot4.x + dot4.y + dot4.z + dot4.w);
        s[jj] = sj;
        m_tile = max(m_tile, sj);
      }
      // Rescale the running sum and accumulator once per tile, not once per key.
      let m_new = max(m, m_tile);
      let alpha = exp(m - m_new);
      l *= alpha;
      for (var c = 0u; c < D4; c++) { acc[c] *= alpha; }
      for (var jj = jb; jj < n; jj++) {
        let pj = exp(s[jj] - m_new);
        l += pj;
        for (var c = 0u; c < D4; c++) { acc[c] += pj * v_tile[jj * D4 + c]; }
      }
      m = m_new;
    }
    workgroupBarrier();  // the next tile overwrites k_tile and v_tile
  }

  if (live) {
    // Every live row sees key t (its own), so l >= 1 here.
    let inv = 1.0 / l;
    for (var c = 0u; c < D4; c++) { o[q_base + c] = acc[c] * inv; }
    lse[(b * p.H + h) * p.T + t] = m + log(l);
  }
}
