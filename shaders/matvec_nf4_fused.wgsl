// Fused decode-speed NF4 projections: matvec_nf4.wgsl's matrix-vector product over several frozen
// NF4 linears that read the same input, in one dispatch (M = 1..4 rows, no bias):
//   entry `qkv`     Y_j (M, N_j) (=|+=) X (M, K) · dequant(W_j)ᵀ,   j = 0, 1, 2 (q, k, v)
//   entry `swiglu`  Y (M, F) = silu(X' · dequant(Wg)ᵀ) · (X' · dequant(Wu)ᵀ)   (gate, up, SwiGLU)
//                   X' = X, or with NORM the RMSNorm of X: w[k] · (X[m, k] · rstd[m])
// (`*_scalar`: the same for any K and blocksize.) Each W_j is an nn.Linear weight [out, in], packed as
// in matvec_nf4.wgsl (docs/nf4.md); absmax_j plain f32 or double-quantized (DQ), one set per linear.
// Reference ops: torch.nn.functional.linear(X, dequantize_4bit(W_j)) for each j; silu(g) * u; the
// norm as LlamaRMSNorm. The twin is matvec_nf4_fused.ref.ts.
// Why: a decoded token runs 16-32 layers of short kernels, and per-dispatch cost dominates; q, k and
// v share x1, gate and up share x2. One dispatch replaces three (q, k, v) and four (RMSNorm, gate,
// up, SwiGLU); m = silu(g)·u is formed in the epilogue from the two sums and g, u are never stored
// (decoding saves nothing for a backward).
// Layout: as matvec_nf4.wgsl (GROUPS groups of WG_K lanes; the same lane numbering, K walk and
// reduction on each path: the subgroup pre-sum where the device has subgroups, else the portable
// sum), so every output is bit-identical to matvec_nf4 on the same path (and the norm to
// rmsnorm_forward.wgsl: its 128 lanes, the same products and the same reduction: subgroups where
// the device has them, else the 128-lane tree).
//   - `qkv`: workgroups are dealt to the three linears in turn (NWG0 for q, NWG1 for k, the rest for
//     v), so a workgroup's GROUPS · COLS columns lie in one linear; which buffer it reads is uniform
//     across the workgroup. ACC bit j: Y_j += (the LoRA branch wrote Y_j first).
//   - `swiglu`: group g owns one column n and accumulates it for both gate and up (the `red` rows
//     c = 0, 1), so one invocation sees both sums; GROUPS columns per workgroup.
// Ten storage buffers in `qkv` (the host falls back to three matvec_nf4 dispatches on a device that
// allows fewer); seven in `swiglu`.

//#if subgroups
enable subgroups;
//#endif

const MR = 4u;                    // most rows of X per dispatch (the host checks M <= MR)
const COLS = 2u;                  // qkv: output columns per group; swiglu: its two sums (gate, up)
const NW = 128u;                  // lanes of the RMSNorm reduction (rmsnorm_forward.wgsl's WG)
override WG_K: u32 = 64;          // lanes along K per column group: 8..64, sized to K by the host
override GROUPS: u32 = 4;         // column groups per workgroup (WG >= NW)
override WG: u32 = WG_K * GROUPS; // derived; not meant to be overridden on its own
override ACC: u32 = 0u;           // qkv: bit j set = Y_j accumulates
override NORM: bool = false;      // swiglu: X is the residual stream, RMS-normed here with w
override BS: u32 = 64;            // NF4 blocksize
override DQ: bool = false;        // absmax holds double-quantized words, not f32
override SG_REDUCE: bool = true;  // subgroup path: false keeps the portable lane numbering and sum

struct Params {
  M: u32,
  K: u32,
  N0: u32,     // qkv: columns of each linear; swiglu: N0 = F (N1, N2 unused)
  N1: u32,
  N2: u32,
  NWG0: u32,   // qkv: workgroups of linear 0, then of linear 1
  NWG1: u32,
  eps: f32,    // swiglu with NORM
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> Y0: array<f32>;    // (M, N0); swiglu: m (M, F)
@group(0) @binding(2) var<storage, read_write> Y1: array<f32>;    // (M, N1)
@group(0) @binding(3) var<storage, read_write> Y2: array<f32>;    // (M, N2)
@group(0) @binding(4) var<storage, read> X: array<f32>;           // (M, K), *_scalar
@group(0) @binding(4) var<storage, read> X4: array<vec4<f32>>;    // (M, K/4), vec4 entries
@group(0) @binding(5) var<storage, read> W0: array<u32>;          // packed codes, *_scalar
@group(0) @binding(6) var<storage, read> W1: array<u32>;
@group(0) @binding(7) var<storage, read> W2: array<u32>;
@group(0) @binding(5) var<storage, read> W04: array<vec4<u32>>;   // packed codes, vec4 entries
@group(0) @binding(6) var<storage, read> W14: array<vec4<u32>>;
@group(0) @binding(7) var<storage, read> W24: array<vec4<u32>>;
@group(0) @binding(8) var<storage, read> A0: array<u32>;          // absmax (f32 bits or DQ words)
@group(0) @binding(9) var<storage, read> A1: array<u32>;
@group(0) @binding(10) var<storage, read> A2: array<u32>;
@group(0) @binding(11) var<storage, read> normW: array<f32>;      // (K), swiglu with NORM

//#include nf4_tables
//#include nf4_lut
//#include glu_act
//#include gemv_reduce

var<workgroup> rstd: array<f32, MR>;

// Block b's scale from the absmax words `a` (word b, or with DQ the code, absmax2 and offset words
// blockScale reads, lib/nf4_block_scale.wgsl), fetched by the caller from its linear's buffer.
fn dqScale(code: u32, absmax2: u32, offset: u32) -> f32 {
  return dmap[code] * bitcast<f32>(absmax2) + bitcast<f32>(offset);
}

// The absmax words of linear j (qkv: 0..2; swiglu: 0..1, never touching A2).
fn absQ(j: u32, i: u32) -> u32 {
  if (j == 0u) { return A0[i]; }
  if (j == 1u) { return A1[i]; }
  return A2[i];
}
fn absS(j: u32, i: u32) -> u32 {
  if (j == 0u) { return A0[i]; }
  return A1[i];
}
fn scaleQ(j: u32, b: u32, nb: u32) -> f32 {
  if (!DQ) { return bitcast<f32>(absQ(j, b)); }
  let q = (nb + 3u) / 4u;
  return dqScale((absQ(j, b >> 2u) >> (8u * (b & 3u))) & 255u, absQ(j, q + b / 256u), absQ(j, q + (nb + 255u) / 256u));
}
fn scaleS(j: u32, b: u32, nb: u32) -> f32 {
  if (!DQ) { return bitcast<f32>(absS(j, b)); }
  let q = (nb + 3u) / 4u;
  return dqScale((absS(j, b >> 2u) >> (8u * (b & 3u))) & 255u, absS(j, q + b / 256u), absS(j, q + (nb + 255u) / 256u));
}

// The sum over the workgroup of ss, where only the first NW lanes hold values (the rest 0): on the
// subgroup path subgroupAdd and one partial per subgroup, as rmsnorm_forward.wgsl's block_sum (the
// partials of subgroups past lane NW are 0 and add nothing); else its tree over NW lanes. Every
// invocation gets the sum.
fn normSum(id: Ids, wg: Wg, ss: f32) -> f32 {
//#if subgroups
  let s = subgroupAdd(ss);
  if (id.lane == 0u) { red[id.sg] = s; }
  workgroupBarrier();
  var t = 0.0;
  for (var i = 0u; i < wg.nsg; i++) { t += red[i]; }
  return t;
//#else
  if (id.lid < NW) { red[id.lid] = ss; }
  workgroupBarrier();
  for (var s = NW / 2u; s > 0u; s >>= 1u) {
    if (id.lid < s) { red[id.lid] += red[id.lid + s]; }
    workgroupBarrier();
  }
  return red[0];
//#endif
}

// rstd of every row of X (NORM): rmsnorm_forward.wgsl's reduction, lane for lane (NW lanes), so the
// normed values equal the x2 that kernel writes. From uniform control flow.
fn normRows(id: Ids, wg: Wg) {
  for (var m = 0u; m < MR; m++) {
    if (m < p.M) {  // p.M is uniform: the barriers stay in uniform control flow
      var ss = 0.0;
      if (id.lid < NW) {
        for (var c = id.lid; c < p.K; c += NW) {
          let v = X[m * p.K + c];
          ss += v * v;
        }
      }
      let t = normSum(id, wg, ss);
      if (id.lid == 0u) { rstd[m] = inverseSqrt(t / f32(p.K) + p.eps); }
      workgroupBarrier();
    }
  }
}

// normRows for the vec4 entries (X bound as vec4): the same elements in the same order.
fn normRows4(id: Ids, wg: Wg) {
  for (var m = 0u; m < MR; m++) {
    if (m < p.M) {
      var ss = 0.0;
      if (id.lid < NW) {
        for (var c = id.lid; c < p.K; c += NW) {
          let i = m * p.K + c;
          let v = X4[i / 4u][i % 4u];
          ss += v * v;
        }
      }
      let t = normSum(id, wg, ss);
      if (id.lid == 0u) { rstd[m] = inverseSqrt(t / f32(p.K) + p.eps); }
      workgroupBarrier();
    }
  }
}

// X'[m, k]: X, or its RMSNorm with NORM.
fn xs(m: u32, k: u32) -> f32 {
  let v = X[m * p.K + k];
  if (NORM) { return normW[k] * (v * rstd[m]); }
  return v;
}
fn xs4(m: u32, k4: u32) -> vec4<f32> {
  let v = X4[m * (p.K / 4u) + k4];
  if (NORM) {
    let w = vec4<f32>(normW[4u * k4], normW[4u * k4 + 1u], normW[4u * k4 + 2u], normW[4u * k4 + 3u]);
    return w * (v * rstd[m]);
  }
  return v;
}

// The partials of every (c, m) to `red`, as matvec_nf4.wgsl reduceAndStore lays them out (subgroup
// pre-sums included). The caller then adds them up (redSum) and stores. Contains barriers: call
// from uniform control flow.
fn toRed(id: Ids, wg: Wg, acc: array<array<f32, MR>, COLS>) {
  workgroupBarrier();  // the norm's reduction may still be reading red
  storePartials(id, wg, acc);
}

// qkv: which linear workgroup w belongs to, and its first column there.
fn qkvPart(w: u32) -> vec2u {
  let cols = GROUPS * COLS;
  if (w < p.NWG0) { return vec2u(0u, w * cols); }
  if (w < p.NWG0 + p.NWG1) { return vec2u(1u, (w - p.NWG0) * cols); }
  return vec2u(2u, (w - p.NWG0 - p.NWG1) * cols);
}
fn qkvN(j: u32) -> u32 {
  if (j == 0u) { return p.N0; }
  if (j == 1u) { return p.N1; }
  return p.N2;
}
fn qkvStore(lid: u32, parts: u32, j: u32, n0: u32) {
  if (lid < COLS * MR * GROUPS) {
    let m = (lid / GROUPS) % MR;
    let n = n0 + (lid % GROUPS) * COLS + lid / (GROUPS * MR);
    let N = qkvN(j);
    if (m < p.M && n < N) {
      let v = redSum(lid, parts);
      let o = m * N + n;
      let acc = ((ACC >> j) & 1u) == 1u;
      if (j == 0u) { if (acc) { Y0[o] += v; } else { Y0[o] = v; } }
      else if (j == 1u) { if (acc) { Y1[o] += v; } else { Y1[o] = v; } }
      else { if (acc) { Y2[o] += v; } else { Y2[o] = v; } }
    }
  }
}
fn qkvCodes4(j: u32, i: u32) -> vec4<u32> {
  if (j == 0u) { return W04[i]; }
  if (j == 1u) { return W14[i]; }
  return W24[i];
}
fn qkvWord(j: u32, i: u32) -> u32 {
  if (j == 0u) { return W0[i]; }
  if (j == 1u) { return W1[i]; }
  return W2[i];
}

@compute @workgroup_size(WG)
fn qkv(id: Ids, wg: Wg) {
  loadTables(id.lid);
  let part = qkvPart(wg.wid.x + wg.wid.y * wg.nwg.x);
  let j = part.x;
  let n0 = part.y;
  let N = qkvN(j);
  let gt = lane(id, wg);
  let g = gt.x;
  let t = gt.y;
  let K4 = p.K / 4u;
  let K32 = p.K / 32u;
  let nb = (N * p.K + BS - 1u) / BS;
  var acc: array<array<f32, MR>, COLS>;
  for (var jj = t; jj < K32; jj += WG_K) {
    var codes: array<vec4<u32>, COLS>;
    var scale: array<f32, COLS>;
    for (var c = 0u; c < COLS; c++) {
      let n = n0 + g * COLS + c;
      if (n < N) {
        codes[c] = qkvCodes4(j, n * K32 + jj);
        scale[c] = scaleQ(j, (n * p.K + 32u * jj) / BS, nb);
      }
    }
    var part4: array<array<f32, MR>, COLS>;
    for (var i = 0u; i < 4u; i++) {
      var xa: array<vec4<f32>, MR>;
      var xb: array<vec4<f32>, MR>;
      for (var m = 0u; m < MR; m++) {
        if (m < p.M) {
          xa[m] = X4[m * K4 + 8u * jj + 2u * i];
          xb[m] = X4[m * K4 + 8u * jj + 2u * i + 1u];
        }
      }
      for (var c = 0u; c < COLS; c++) {
        let wa = decodeLo(codes[c][i]);
        let wb = decodeHi(codes[c][i]);
        for (var m = 0u; m < MR; m++) { part4[c][m] += dot(xa[m], wa) + dot(xb[m], wb); }
      }
    }
    for (var c = 0u; c < COLS; c++) {
      for (var m = 0u; m < MR; m++) { acc[c][m] = fma(scale[c], part4[c][m], acc[c][m]); }
    }
  }
  toRed(id, wg, acc);
  qkvStore(id.lid, partsPerOutput(wg), j, n0);
}

@compute @workgroup_size(WG)
fn qkv_scalar(id: Ids, wg: Wg) {
  loadTables(id.lid);
  let part = qkvPart(wg.wid.x + wg.wid.y * wg.nwg.x);
  let j = part.x;
  let n0 = part.y;
  let N = qkvN(j);
  let gt = lane(id, wg);
  let g = gt.x;
  let t = gt.y;
  let nb = (N * p.K + BS - 1u) / BS;
  var acc: array<array<f32, MR>, COLS>;
  for (var k = t; k < p.K; k += WG_K) {
    var xv: array<f32, MR>;
    for (var m = 0u; m < MR; m++) {
      if (m < p.M) { xv[m] = X[m * p.K + k]; }
    }
    for (var c = 0u; c < COLS; c++) {
      let n = n0 + g * COLS + c;
      if (n < N) {
        let f = n * p.K + k;
        let w = nibble(qkvWord(j, f >> 3u), f) * scaleQ(j, f / BS, nb);
        for (var m = 0u; m < MR; m++) { acc[c][m] = fma(xv[m], w, acc[c][m]); }
      }
    }
  }
  toRed(id, wg, acc);
  qkvStore(id.lid, partsPerOutput(wg), j, n0);
}

// swiglu: invocation lid < MR · GROUPS adds up row m, column n0 + g of both sums and stores m.
fn swigluStore(lid: u32, parts: u32, n0: u32) {
  if (lid < MR * GROUPS) {
    let m = lid / GROUPS;
    let g = lid % GROUPS;
    let n = n0 + g;
    if (m < p.M && n < p.N0) {
      let gs = redSum((0u * MR + m) * GROUPS + g, parts);
      let us = redSum((1u * MR + m) * GROUPS + g, parts);
      Y0[m * p.N0 + n] = gs * sigmoid(gs) * us;
    }
  }
}
fn swCodes4(j: u32, i: u32) -> vec4<u32> {
  if (j == 0u) { return W04[i]; }
  return W14[i];
}
fn swWord(j: u32, i: u32) -> u32 {
  if (j == 0u) { return W0[i]; }
  return W1[i];
}

@compute @workgroup_size(WG)
fn swiglu(id: Ids, wg: Wg) {
  loadTables(id.lid);
  if (NORM) { normRows4(id, wg); }
  let n0 = (wg.wid.x + wg.wid.y * wg.nwg.x) * GROUPS;
  let gt = lane(id, wg);
  let g = gt.x;
  let t = gt.y;
  let n = n0 + g;
  let K32 = p.K / 32u;
  let nb = (p.N0 * p.K + BS - 1u) / BS;
  var acc: array<array<f32, MR>, COLS>;
  for (var jj = t; jj < K32; jj += WG_K) {
    var codes: array<vec4<u32>, COLS>;
    var scale: array<f32, COLS>;
    if (n < p.N0) {
      for (var c = 0u; c < COLS; c++) {
        codes[c] = swCodes4(c, n * K32 + jj);
        scale[c] = scaleS(c, (n * p.K + 32u * jj) / BS, nb);
      }
    }
    var part4: array<array<f32, MR>, COLS>;
    for (var i = 0u; i < 4u; i++) {
      var xa: array<vec4<f32>, MR>;
      var xb: array<vec4<f32>, MR>;
      for (var m = 0u; m < MR; m++) {
        if (m < p.M) {
          xa[m] = xs4(m, 8u * jj + 2u * i);
          xb[m] = xs4(m, 8u * jj + 2u * i + 1u);
        }
      }
      for (var c = 0u; c < COLS; c++) {
        let wa = decodeLo(codes[c][i]);
        let wb = decodeHi(codes[c][i]);
        for (var m = 0u; m < MR; m++) { part4[c][m] += dot(xa[m], wa) + dot(xb[m], wb); }
      }
    }
    for (var c = 0u; c < COLS; c++) {
      for (var m = 0u; m < MR; m++) { acc[c][m] = fma(scale[c], part4[c][m], acc[c][m]); }
    }
  }
  toRed(id, wg, acc);
  swigluStore(id.lid, partsPerOutput(wg), n0);
}

@compute @workgroup_size(WG)
fn swiglu_scalar(id: Ids, wg: Wg) {
  loadTables(id.lid);
  if (NORM) { normRows(id, wg); }
  let n0 = (wg.wid.x + wg.wid.y * wg.nwg.x) * GROUPS;
  let gt = lane(id, wg);
  let g = gt.x;
  let t = gt.y;
  let n = n0 + g;
  let nb = (p.N0 * p.K + BS - 1u) / BS;
  var acc: array<array<f32, MR>, COLS>;
  for (var k = t; k < p.K; k += WG_K) {
    var xv: array<f32, MR>;
    for (var m = 0u; m < MR; m++) {
      if (m < p.M) { xv[m] = xs(m, k); }
    }
    if (n < p.N0) {
      let f = n * p.K + k;
      for (var c = 0u; c < COLS; c++) {
        let w = nibble(swWord(c, f >> 3u), f) * scaleS(c, f / BS, nb);
        for (var m = 0u; m < MR; m++) { acc[c][m] = fma(xv[m], w, acc[c][m]); }
      }
    }
  }
  toRed(id, wg, acc);
  swigluStore(id.lid, partsPerOutput(wg), n0);
}
