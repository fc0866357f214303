// CPU twin of shaders/attention_forward.wgsl: the definition of correct. Plain loops computing the
// full row of probabilities P[t, 0..t] per (b, h, t), as HF's eager path does; nothing flash-style.
// f64 accumulation over f32 storage.

export function attentionForwardRef(
  o: Float32Array, // (B, T, H, D) out
  lse: Float32Array, // (B, H, T) out
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
  softcap = 0, // score softcap c: s -> c·tanh(s / c) (Gemma 2); 0 = none
): void {
  const nRep = H / Hkv; // repeat_kv: KV head g serves Q heads g*nRep .. (g+1)*nRep-1
  const s = new Float64Array(T); // scaled scores of one query row
  const P = new Float64Array(T); // its softmax
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / nRep);
      for (let t = 0; t < T; t++) {
        const qi = ((b * T + t) * H + h) * D;
        // Scores of the keys this query may see (lo <= j <= t); the causal (and window) mask removes the rest.
        const lo = Math.max(window > 0 ? t - window + 1 : 0, exampleStart(positions, b, T, t));
        let max = -Infinity;
        for (let j = lo; j <= t; j++) {
          const kj = ((b * T + j) * Hkv + g) * D;
          let dot = 0;
          for (let d = 0; d < D; d++) dot += q[qi + d] * k[kj + d];
          s[j] = softcap > 0 ? softcap * Math.tanh((dot * scale) / softcap) : dot * scale;
          max = Math.max(max, s[j]);
        }
        let sum = 0;
        for (let j = lo; j <= t; j++) sum += Math.exp(s[j] - max);
        lse[(b * H + h) * T + t] = max + Math.log(sum);
        for (let j = lo; j <= t; j++) P[j] = Math.exp(s[j] - max) / sum;
        for (let d = 0; d < D; d++) {
          let acc = 0;
          for (let j = lo; j <= t; j++) acc += P[j] * v[((b * T + j) * Hkv + g) * D + d];
          o[qi + d] = acc;
        }
      }
    }
  }
}

/** The first key query t of row b may see by example (packed rows): t - positions[b, t], or 0 with
 *  no positions. A position above t (a row not starting an example) leaves plain causal attention. */
export function exampleStart(positions: ArrayLike<number> | undefined, b: number, T: number, t: number): number {
  return positions ? t - Math.min(positions[b * T + t], t) : 0;
}
