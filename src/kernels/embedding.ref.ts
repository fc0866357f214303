// CPU twin of shaders/embedding.wgsl: the definition of correct, on the whole table (the GPU's
// chunking must not change the result). For f16 storage (main_f16) the table is the f16 values
// widened to f32 (unpackF16 in matmul_packed_f16.ref.ts): a gather copies them exactly.

export function embeddingRef(
  x: Float32Array, // (N, C) out
  ids: Uint32Array, // (N)
  E: Float32Array, // (V, C)
  N: number,
  C: number,
  V: number,
  scale = 1, // Gemma's normalizer: one f32 product per element, as the kernel rounds it
): void {
  for (let n = 0; n < N; n++) {
    const id = ids[n];
    for (let c = 0; c < C; c++) x[n * C + c] = id < V ? Math.fround(E[id * C + c] * scale) : 0; // out-of-range ids: zeros
  }
}
