// Fused cross-entropy forward + backward over a chunk of Tc tokens, in place on the logits.
// Reference: torch.nn.functional.cross_entropy(logits, targets, ignore_index=-100, reduction='mean')
// and its autograd gradient (fixtures/goldens/cross_entropy.json).
//   lse[t]     = m + log(sum_v exp(logits[t, v] - m)),  m = max_v logits[t, v]
//   loss[t]    = lse[t] - logits[t, target[t]]                       (0 when target[t] == -100)
//   logits[t,v] <- (exp(logits[t, v] - lse[t]) - [v == target[t]]) * gradScale   (0 when ignored)
// gradScale = 1 / (unmasked targets in the whole optimizer step), so chunks and micro-batches add
// up to the mean over the step (Transformers/TRL semantics); the mean loss is sum(loss) * gradScale.
// A target outside [0, V) other than -100 cannot be reported from here: its loss is NaN (so the
// step's loss shows it) and its gradient row is 0. The data pipeline validates targets upstream.
// With a final-logit softcap c > 0 (Gemma 2's final_logit_softcapping) the loss sees
// z = c·tanh(x / c) in place of each logit x, and the gradient written back is d/dx:
// (softmax(z) - onehot) · (1 - tanh²(x / c)) · gradScale. c = 0 leaves the logits as they are.
// Shapes: loss (Tc); logits (Tc, V), overwritten by dlogits; targets (Tc) i32.
// Version 2: one workgroup per row (llm.c llmc/fused_classifier.cuh's layout). Pass 1: each thread keeps an online (max,
// sum) over its strided elements (one exp per element), then the (m, s) pairs are combined: with
// subgroupMax/subgroupAdd inside each subgroup and one barrier over the num_subgroups pairs where the
// device has `subgroups` (src/kernels/subgroups.ts), else by a tree in workgroup memory (log2(WG)
// barriers). Pass 2 rereads the row and writes the gradient. f32 throughout.

//#if subgroups
enable subgroups;
//#endif

override WG: u32 = 256;

const IGNORE_INDEX: i32 = -100;
const LOWEST: f32 = -3.4028234663852886e38;

struct Params {
  Tc: u32,
  V: u32,
  gradScale: f32,
  softcap: f32,  // final-logit softcap c, 0 = none
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> loss: array<f32>;    // (Tc)
@group(0) @binding(2) var<storage, read_write> logits: array<f32>;  // (Tc, V): logits in, dlogits out
@group(0) @binding(3) var<storage, read> targets: array<i32>;       // (Tc)

// tanh from exp(-2|x|), which cannot overflow (sinh/cosh-based tanh can reach inf / inf).
fn tanh_safe(x: f32) -> f32 {
  let e = exp(-2.0 * abs(x));
  return sign(x) * (1.0 - e) / (1.0 + e);
}

// The logit the loss sees.
fn capped(x: f32) -> f32 {
  if (p.softcap > 0.0) { return p.softcap * tanh_safe(x / p.softcap); }
  return x;
}

var<workgroup> wm: array<f32, WG>;
var<workgroup> ws: array<f32, WG>;

//#include block_ids
// The row's (max, sum of exp(x - max)) from every invocation's (m, s), in every invocation; every
// invocation must call it (it has barriers).
fn combine(id: Ids, m: f32, s: f32) -> vec2f {
//#if subgroups
  let sm = subgroupMax(m);
  let ss = subgroupAdd(s * exp(m - sm));
  if (id.lane == 0u) {
    wm[id.sg] = sm;
    ws[id.sg] = ss;
  }
  workgroupBarrier();
  var mm = LOWEST;
  for (var i = 0u; i < id.nsg; i++) { mm = max(mm, wm[i]); }
  var t = 0.0;
  for (var i = 0u; i < id.nsg; i++) { t += ws[i] * exp(wm[i] - mm); }
  return vec2f(mm, t);
//#else
  let lid = id.lid;
  wm[lid] = m;
  ws[lid] = s;
  workgroupBarrier();
  for (var k = WG / 2u; k > 0u; k >>= 1u) {
    if (lid < k) {
      let m1 = wm[lid];
      let m2 = wm[lid + k];
      let mm = max(m1, m2);
      ws[lid] = ws[lid] * exp(m1 - mm) + ws[lid + k] * exp(m2 - mm);
      wm[lid] = mm;
    }
    workgroupBarrier();
  }
  return vec2f(wm[0], ws[0]);
//#endif
}

@compute @workgroup_size(WG)
fn main(id: Ids) {
  let lid = id.lid;
  let t = id.wid.x + id.wid.y * id.nwg.x;
  // No early return: every invocation must reach the barriers. Rows past Tc do no loads or stores.
  let live = t < p.Tc;
  let base = t * p.V;
  var m = LOWEST;
  var s = 0.0;
  var tgt = IGNORE_INDEX;
  var xt = 0.0;
  if (live) {
    tgt = targets[t];
    // Read the target logit now: after the barriers below other threads overwrite the row.
    if (lid == 0u && tgt >= 0 && u32(tgt) < p.V) { xt = capped(logits[base + u32(tgt)]); }
    for (var v = lid; v < p.V; v += WG) {
      let x = capped(logits[base + v]);
      if (x > m) {
        s = s * exp(m - x) + 1.0;
        m = x;
      } else {
        s += exp(x - m);
      }
    }
  }
  let ms = combine(id, m, s);
  let mrow = ms.x;
  let srow = ms.y;
  if (live) {
    let ignored = tgt == IGNORE_INDEX;
    let valid = tgt >= 0 && u32(tgt) < p.V;
    let lse = mrow + log(srow);
    if (lid == 0u) {
      if (ignored) {
        loss[t] = 0.0;
      } else if (valid) {
        loss[t] = lse - xt;
      } else {
        // WGSL has no NaN literal and rejects a NaN constant expression, so the quiet-NaN bits
        // are made a runtime value (OR-ing in a runtime zero) before the bitcast.
        loss[t] = bitcast<f32>(0x7fc00000u | (p.V & 0u));
      }
    }
    for (var v = lid; v < p.V; v += WG) {
      var d = 0.0;
      if (valid) {
        let x = logits[base + v];
        var slope = 1.0;
        var z = x;
        if (p.softcap > 0.0) {
          let th = tanh_safe(x / p.softcap);
          z = p.softcap * th;
          slope = 1.0 - th * th;
        }
        d = exp(z - lse);
        if (i32(v) == tgt) { d -= 1.0; }
        d *= p.gradScale * slope;
      }
      logits[base + v] = d;
    }
  }
}
