// CPU twin of shaders/logit_softcap.wgsl: the definition of correct (Gemma2ForCausalLM's
// final-logit softcap), f64 math over f32 storage, in place.

export function logitSoftcapRef(x: Float32Array, n: number, cap: number): void {
  for (let i = 0; i < n; i++) x[i] = cap * Math.tanh(x[i] / cap);
}
