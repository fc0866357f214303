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

/** Twin of the `append` entry: q (T, H, D) rotated in place; rope(k) into kc and v into vc, token t
 *  at row positions[t] (B = 1), rows past the cache not written. */
export function ropeAppendKvRef(
  q: Float32Array, k: Float32Array, v: Float32Array, positions: Uint32Array, cos: Float32Array, sin: Float32Array,
  kc: Float32Array, vc: Float32Array, T: number, H: number, Hkv: number, D: number,
): void {
  ropeForwardRef(q, positions, cos, sin, 1, T, H, D);
  const row = Hkv * D;
  const rotated = k.slice(0, T * row);
  ropeForwardRef(rotated, positions, cos, sin, 1, T, Hkv, D);
  for (let t = 0; t < T; t++) {
    const pos = positions[t];
    if ((pos + 1) * row > Math.min(kc.length, vc.length)) continue;
    kc.set(rotated.subarray(t * row, (t + 1) * row), pos * row);
    vc.set(v.subarray(t * row, (t + 1) * row), pos * row);
  }
}

/** Twin of the `qk` entry: ropeForwardRef on q (H heads) and on k (Hkv heads). */
export function ropeForwardQkRef(
  q: Float32Array, k: Float32Array, positions: Uint32Array, cos: Float32Array, sin: Float32Array, B: number, T: number, H: number, Hkv: number, D: number,
): void {
  ropeForwardRef(q, positions, cos, sin, B, T, H, D);
  ropeForwardRef(k, positions, cos, sin, B, T, Hkv, D);
}
