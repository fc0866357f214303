// CPU twin of shaders/attention_backward.wgsl. Checked against PyTorch autograd (fixtures/goldens/
// attention.json) and by finite differences. It recomputes the full softmax row P[t, 0..t] from q and
// k (nothing saved, nothing flash-style), then applies the softmax backward:
//   dP[t,j] = dO[t]·v[j],  dS[t,j] = P[t,j] (dP[t,j] - sum_i P[t,i] dP[t,i]),
//   dq[t] += scale dS[t,j] k[j],  dk[j] += scale dS[t,j] q[t],  dv[j] += P[t,j] dO[t].
// The kernel's saved o and lse are not inputs here: sum_i P dP equals rowsum(dO ⊙ o) only if the
// forward was right, and the twin should not assume that.

import { exampleStart } from './attention_forward.ref.ts';

export function attentionBackwardRef(
  dq: Float32Array, // (B, T, H, D) out
  dk: Float32Array, // (B, T, Hkv, D) out
  dv: Float32Array, // (B, T, Hkv, D) out
  dO: Float32Array, // (B, T, H, D)
  q: Float32Array, // (B, T, H, D)
  k: Float32Array, // (B, T, Hkv, D)
  v: Float32Array, // (B, T, Hkv, D)
  B: number,
  T: number,
  H: number,
  Hkv: number,
  D: number,
  scale = 1 / Math.sqrt(D),
  window = 0, // sliding window W: query t sees keys t - W < j <= t; 0 = full causal
  positions?: ArrayLike<number>, // (B, T) packed rows: query t sees no key before t - positions[t]
  softcap = 0, // score softcap c: the softmax saw c·tanh(s / c), whose slope 1 - tanh² scales dS
): void {
  const nRep = H / Hkv;
  // Accumulate in f64; dk and dv sum over the n_rep query heads of their group (repeat_kv's backward).
  const dq64 = new Float64Array(dq.length), dk64 = new Float64Array(dk.length), dv64 = new Float64Array(dv.length);
  const P = new Float64Array(T), dP = new Float64Array(T), slope = new Float64Array(T);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / nRep);
      for (let t = 0; t < T; t++) {
        const qi = ((b * T + t) * H + h) * D;
        const lo = Math.max(window > 0 ? t - window + 1 : 0, exampleStart(positions, b, T, t));
        let max = -Infinity;
        for (let j = lo; j <= t; j++) {
          const kj = ((b * T + j) * Hkv + g) * D;
          let dot = 0;
          for (let d = 0; d < D; d++) dot += q[qi + d] * k[kj + d];
          const th = softcap > 0 ? Math.tanh((dot * scale) / softcap) : 0;
          P[j] = softcap > 0 ? softcap * th : dot * scale;
          slope[j] = softcap > 0 ? 1 - th * th : 1;
          max = Math.max(max, P[j]);
        }
        let sum = 0;
        for (let j = lo; j <= t; j++) sum += Math.exp(P[j] - max);
        for (let j = lo; j <= t; j++) P[j] = Math.exp(P[j] - max) / sum;
        let pdp = 0;
        for (let j = lo; j <= t; j++) {
          const vj = ((b * T + j) * Hkv + g) * D;
          let dot = 0;
          for (let d = 0; d < D; d++) dot += dO[qi + d] * v[vj + d];
          dP[j] = dot;
          pdp += P[j] * dot;
        }
        for (let j = lo; j <= t; j++) {
          const kj = ((b * T + j) * Hkv + g) * D;
          const dS = P[j] * (dP[j] - pdp) * slope[j];
          for (let d = 0; d < D; d++) {
            dq64[qi + d] += scale * dS * k[kj + d];
            dk64[kj + d] += scale * dS * q[qi + d];
            dv64[kj + d] += P[j] * dO[qi + d];
          }
        }
      }
    }
  }
  dq.set(dq64);
  dk.set(dk64);
  dv.set(dv64);
}
