// CPU twin of shaders/attention_cached.wgsl: the definition of correct. Plain loops: for each new
// query row the full probability row over the keys it may see (j <= pos0 + i), as HF's eager path
// computes it with a KV cache (past keys concatenated before the new ones). f64 accumulation.

export function attentionCachedRef(
  o: Float32Array, // (Tn, H, D) out
  q: Float32Array, // (Tn, H, D)
  k: Float32Array, // (P, Hkv, D), rows 0 .. pos0+Tn-1 used
  v: Float32Array, // (P, Hkv, D)
  Tn: number,
  pos0: number,
  H: number,
  Hkv: number,
  D: number,
  scale = 1 / Math.sqrt(D),
  window = 0, // sliding window W: row i sees keys pos0 + i - W < j <= pos0 + i; 0 = full causal
  softcap = 0, // score softcap c: s -> c·tanh(s / c) (Gemma 2); 0 = none
): void {
  const nRep = H / Hkv; // repeat_kv: KV head g serves Q heads g*nRep .. (g+1)*nRep-1
  const s = new Float64Array(pos0 + Tn);
  for (let i = 0; i < Tn; i++) {
    const end = pos0 + i + 1; // causal: this row sees keys lo .. pos0+i
    const lo = window > 0 ? Math.max(0, end - window) : 0;
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / nRep);
      const qi = (i * H + h) * D;
      let max = -Infinity;
      for (let j = lo; j < end; j++) {
        let dot = 0;
        for (let d = 0; d < D; d++) dot += q[qi + d] * k[(j * Hkv + g) * D + d];
        s[j] = softcap > 0 ? softcap * Math.tanh((dot * scale) / softcap) : dot * scale;
        max = Math.max(max, s[j]);
      }
      let sum = 0;
      for (let j = lo; j < end; j++) sum += Math.exp(s[j] - max);
      for (let d = 0; d < D; d++) {
        let acc = 0;
        for (let j = lo; j < end; j++) acc += (Math.exp(s[j] - max) / sum) * v[(j * Hkv + g) * D + d];
        o[qi + d] = acc;
      }
    }
  }
}
