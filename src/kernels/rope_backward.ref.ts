// CPU twin of shaders/rope_backward.wgsl. Checked against PyTorch autograd (fixtures/goldens/rope.json)
// and by finite differences. In place: dx holds dy on entry.

export function ropeBackwardRef(
  dx: Float32Array, // (B, T, Hn, D): dy in, dx out
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
    if (pos >= P) continue;
    for (let h = 0; h < Hn; h++) {
      const base = (bt * Hn + h) * D;
      for (let j = 0; j < half; j++) {
        const c = cos[pos * half + j], s = sin[pos * half + j];
        const d1 = dx[base + j], d2 = dx[base + j + half];
        // Transpose of [[c, -s], [s, c]].
        dx[base + j] = d1 * c + d2 * s;
        dx[base + j + half] = d2 * c - d1 * s;
      }
    }
  }
}

/** Twin of the `qk` entry: ropeBackwardRef on dq (H heads) and on dk (Hkv heads). */
export function ropeBackwardQkRef(
  dq: Float32Array, dk: Float32Array, positions: Uint32Array, cos: Float32Array, sin: Float32Array, B: number, T: number, H: number, Hkv: number, D: number,
): void {
  ropeBackwardRef(dq, positions, cos, sin, B, T, H, D);
  ropeBackwardRef(dk, positions, cos, sin, B, T, Hkv, D);
}
