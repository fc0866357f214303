// RMSNorm forward, Llama/Mistral/Qwen2 flavour (HF LlamaRMSNorm):
//   rstd[n] = 1 / sqrt(mean_c(x[n,c]^2) + eps)
//   y[n,c]  = w[c] * (x[n,c] * rstd[n])
// Shapes: x, y (N, C) row-major; w (C); rstd (N), saved for the backward pass.
// Version 2: one workgroup per row, WG threads stride over C. The sum of squares is reduced with
// subgroupAdd inside each subgroup and one barrier for the num_subgroups partials where the device
// has `subgroups` (src/kernels/subgroups.ts picks the path), else with a tree in workgroup memory
// (log2(WG) barriers). All math in f32, as HF does with hidden_states.float().
// Entry `copy` also writes xc = x: the decoder layer starts its residual sum (h2 = h + ..., then
// h' = h2 + ...) as a copy of the norm's input, and a buffer copy would end the compute pass.
// Entry `add` adds the normed row into y instead of writing it: Gemma 2/3 norm each sublayer's
// output before the residual add (h2 = h + rmsnorm(attn), h' = h2 + rmsnorm(mlp)).

//#if subgroups
enable subgroups;
//#endif

override WG: u32 = 128;

struct Params {
  N: u32,
  C: u32,
  eps: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;     // (N, C)
@group(0) @binding(2) var<storage, read_write> rstd: array<f32>;  // (N)
@group(0) @binding(3) var<storage, read> x: array<f32>;           // (N, C)
@group(0) @binding(4) var<storage, read> w: array<f32>;           // (C)
@group(0) @binding(5) var<storage, read_write> xc: array<f32>;    // (N, C), copy only

//#include block_ids
//#include block_sum

// 1 / rms of row n (every invocation must call it: it holds barriers); rows past N give junk, unused.
fn rowRstd(n: u32, live: bool, id: Ids) -> f32 {
  let base = n * p.C;
  var ss = 0.0;
  if (live) {
    for (var c = id.lid; c < p.C; c += WG) {
      let v = x[base + c];
      ss += v * v;
    }
  }
  return inverseSqrt(block_sum(id, ss) / f32(p.C) + p.eps);
}

@compute @workgroup_size(WG)
fn main(id: Ids) {
  let lid = id.lid;
  let n = id.wid.x + id.wid.y * id.nwg.x;
  // No early return: every invocation must reach the barriers. Rows past N do no loads or stores.
  let live = n < p.N;
  let r = rowRstd(n, live, id);
  if (live) {
    let base = n * p.C;
    if (lid == 0u) { rstd[n] = r; }
    for (var c = lid; c < p.C; c += WG) {
      y[base + c] = w[c] * (x[base + c] * r);
    }
  }
}

@compute @workgroup_size(WG)
fn copy(id: Ids) {
  let lid = id.lid;
  let n = id.wid.x + id.wid.y * id.nwg.x;
  let live = n < p.N;
  let r = rowRstd(n, live, id);
  if (live) {
    let base = n * p.C;
    if (lid == 0u) { rstd[n] = r; }
    for (var c = lid; c < p.C; c += WG) {
      let v = x[base + c];
      y[base + c] = w[c] * (v * r);
      xc[base + c] = v;
    }
  }
}

@compute @workgroup_size(WG)
fn add(id: Ids) {
  let lid = id.lid;
  let n = id.wid.x + id.wid.y * id.nwg.x;
  let live = n < p.N;
  let r = rowRstd(n, live, id);
  if (live) {
    let base = n * p.C;
    if (lid == 0u) { rstd[n] = r; }
    for (var c = lid; c < p.C; c += WG) {
      y[base + c] += w[c] * (x[base + c] * r);
    }
  }
}
