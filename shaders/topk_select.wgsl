// Top-k selection over a row of logits, for sampling on the GPU: the k highest-ranked (value, id)
// pairs of n, best first. Rank: a larger value first, an equal value the smaller id first (a total
// order; torch.argmax and src/infer/sample.ts break ties the same way). Only these pairs are read
// back, so a decoded token moves 8·k bytes instead of the 4·V of its whole logits row.
// Shapes: logits (n) f32 (`first`) or cand (n) pairs (`merge`); out (groups, k) pairs, each pair
// two u32 words: the value's f32 bits, then the id. k <= CHUNK.
// Each workgroup loads CHUNK entries (past n: -inf with id 0xffffffff, ranked after every real
// entry), sorts them by rank with a bitonic network in workgroup memory and writes its first k.
// The host repeats `merge` over the groups' outputs until one group is left (k <= 256: each stage
// divides the candidates by 8 or more, so 2 to 4 dispatches at 128k to 152k vocabularies).
// Exact: values are only compared and copied, never computed. Reference: torch.topk with the
// stable tie order; the twin is src/kernels/topk_select.ref.ts.
// Version 1: a full bitonic sort per chunk (2,048 entries, 16 KiB of workgroup memory).

const WG: u32 = 256u;
const CHUNK: u32 = 2048u;
const NONE: u32 = 0xffffffffu;

struct Params {
  n: u32,  // entries in
  k: u32,  // pairs out per group
  negInf: u32,  // 0xff800000, the bits of -inf: WGSL refuses an infinite constant, so it comes in here
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;  // (groups, k) pairs
@group(0) @binding(2) var<storage, read> logits: array<f32>;     // (n), first
@group(0) @binding(2) var<storage, read> cand: array<u32>;       // (n) pairs, merge

var<workgroup> sv: array<f32, CHUNK>;
var<workgroup> si: array<u32, CHUNK>;

// True when entry a ranks before entry b.
fn before(av: f32, ai: u32, bv: f32, bi: u32) -> bool {
  return av > bv || (av == bv && ai < bi);
}

// Sorts sv/si by rank (best first) and writes the first k entries as group g's output.
fn sortAndWrite(lid: u32, g: u32) {
  for (var size = 2u; size <= CHUNK; size = size << 1u) {
    for (var stride = size >> 1u; stride > 0u; stride = stride >> 1u) {
      workgroupBarrier();
      for (var t = lid; t < CHUNK / 2u; t += WG) {
        // The pair (i, i + stride) of this step, i with bit `stride` clear.
        let i = 2u * stride * (t / stride) + t % stride;
        let j = i + stride;
        let forward = (i & size) == 0u;  // this run sorts best first; the other half reversed
        let jFirst = before(sv[j], si[j], sv[i], si[i]);
        if (jFirst == forward) {
          let v = sv[i];
          let id = si[i];
          sv[i] = sv[j];
          si[i] = si[j];
          sv[j] = v;
          si[j] = id;
        }
      }
    }
  }
  workgroupBarrier();
  for (var t = lid; t < p.k; t += WG) {
    let o = 2u * (g * p.k + t);
    out[o] = bitcast<u32>(sv[t]);
    out[o + 1u] = si[t];
  }
}

@compute @workgroup_size(WG)
fn first(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = wid.x;
  for (var e = lid; e < CHUNK; e += WG) {
    let idx = g * CHUNK + e;
    if (idx < p.n) {
      sv[e] = logits[idx];
      si[e] = idx;
    } else {
      sv[e] = bitcast<f32>(p.negInf);
      si[e] = NONE;
    }
  }
  sortAndWrite(lid, g);
}

@compute @workgroup_size(WG)
fn merge(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = wid.x;
  for (var e = lid; e < CHUNK; e += WG) {
    let idx = g * CHUNK + e;
    if (idx < p.n) {
      sv[e] = bitcast<f32>(cand[2u * idx]);
      si[e] = cand[2u * idx + 1u];
    } else {
      sv[e] = bitcast<f32>(p.negInf);
      si[e] = NONE;
    }
  }
  sortAndWrite(lid, g);
}
