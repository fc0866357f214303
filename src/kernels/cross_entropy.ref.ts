// CPU twin of shaders/cross_entropy.wgsl: the definition of correct. Checked against PyTorch
// (F.cross_entropy with ignore_index=-100, reduction='mean', and autograd) and by finite differences.
// f64 math, f32 storage. In place: logits become dlogits.

export function crossEntropyRef(
  loss: Float32Array, // (Tc) out: lse - logit[target]; 0 ignored; NaN for a target outside [0, V)
  logits: Float32Array, // (Tc, V): logits in, dlogits = (softmax - onehot) * gradScale out
  targets: Int32Array, // (Tc), -100 = ignored
  Tc: number,
  V: number,
  gradScale: number,
  softcap = 0, // final-logit softcap c: the loss sees c·tanh(x / c); the gradient is d/dx
): void {
  const z = new Float64Array(V), slope = new Float64Array(V);
  for (let t = 0; t < Tc; t++) {
    const row = t * V, tgt = targets[t];
    const valid = tgt >= 0 && tgt < V;
    for (let v = 0; v < V; v++) {
      const th = softcap > 0 ? Math.tanh(logits[row + v] / softcap) : 0;
      z[v] = softcap > 0 ? softcap * th : logits[row + v];
      slope[v] = softcap > 0 ? 1 - th * th : 1;
    }
    let m = -Infinity;
    for (let v = 0; v < V; v++) m = Math.max(m, z[v]);
    let s = 0;
    for (let v = 0; v < V; v++) s += Math.exp(z[v] - m);
    const lse = m + Math.log(s);
    loss[t] = tgt === -100 ? 0 : valid ? lse - z[tgt] : NaN;
    for (let v = 0; v < V; v++) {
      logits[row + v] = valid ? (Math.exp(z[v] - lse) - (v === tgt ? 1 : 0)) * gradScale * slope[v] : 0;
    }
  }
}
