// CPU twin of shaders/rope_forward.wgsl: the definition of correct. In place, like the kernel.

export function ropeForwardRef(
  x: Float32Array, // (B, T, Hn, D) in place
  positions: Uint32Array, // (B * T)
  cos: Float32Array, // (P, D/2)
  sin: Float32Array, // (P, D/2)
  B: number,
  T: number,
  Hn: number,
  D: number,
): void {
  const half = D / 2;
  const P = cos.length / half;
  for (let bt = 0; bt < B * T; bt++) {
    const pos = positions[bt];
    if (pos >= P) continue; // out-of-table positions are left unchanged, as on the GPU
    for (let h = 0; h < Hn; h++) {
      const base = (bt * Hn + h) * D;
      for (let j = 0; j < half; j++) {
        const c = cos[pos * half + j], s = sin[pos * half + j];
        const x1 = x[base + j], x2 = x[base + j + half];
        x[base + j] = x1 * c - x2 * s;
        x[base + j + half] = x2 * c + x1 * s;
      }
    }
  }
}
