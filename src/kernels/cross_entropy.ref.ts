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
): void {
  for (let t = 0; t < Tc; t++) {
    const row = t * V, tgt = targets[t];
    const valid = tgt >= 0 && tgt < V;
    let m = -Infinity;
    for (let v = 0; v < V; v++) m = Math.max(m, logits[row + v]);
    let s = 0;
    for (let v = 0; v < V; v++) s += Math.exp(logits[row + v] - m);
    const lse = m + Math.log(s);
    loss[t] = tgt === -100 ? 0 : valid ? lse - logits[row + tgt] : NaN;
    for (let v = 0; v < V; v++) {
      logits[row + v] = valid ? (Math.exp(logits[row + v] - lse) - (v === tgt ? 1 : 0)) * gradScale : 0;
    }
  }
}
