// CPU twin of shaders/lora_forward.wgsl: the definition of correct. Plain loops, f32 storage, f64
// accumulation. Also the one TypeScript copy of the dropout mask (PCG hash), which the backward
// twin and the tests use.
import { rmsnormForwardRef } from './rmsnorm_forward.ref.ts';

/** PCG hash (Jarzynski & Olano 2020), u32 -> u32, exactly as in the WGSL. */
export function pcg(v: number): number {
  const state = (Math.imul(v >>> 0, 747796405) + 2891336453) >>> 0;
  const word = Math.imul(((state >>> ((state >>> 28) + 4)) ^ state) >>> 0, 277803737) >>> 0;
  return ((word >>> 22) ^ word) >>> 0;
}

/** dropout(x)[i] as the kernels compute it: keep iff pcg(i ^ pcg(seed)) >= floor(p * 2^32), scale 1/(1-p). */
export function dropoutRef(x: Float32Array, seed: number, p: number): Float32Array {
  const thresh = Math.min(0xffffffff, Math.floor(p * 2 ** 32));
  const invKeep = Math.fround(1 / (1 - p));
  const sh = pcg(seed >>> 0);
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = pcg((i ^ sh) >>> 0) >= thresh ? x[i] * invKeep : 0;
  return out;
}

export function loraForwardRef(
  Y: Float32Array, // (M, N) in: base output, out: base + scale * U Bᵀ
  U: Float32Array, // (M, R) out, saved for the backward
  x: Float32Array, // (M, K)
  A: Float32Array, // (R, K)
  B: Float32Array, // (N, R)
  M: number,
  N: number,
  K: number,
  R: number,
  scale: number,
  dropout = 0,
  seed = 0,
): void {
  const xd = dropoutRef(x, seed, dropout);
  for (let m = 0; m < M; m++) {
    for (let r = 0; r < R; r++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += xd[m * K + k] * A[r * K + k];
      U[m * R + r] = s;
    }
  }
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let r = 0; r < R; r++) s += U[m * R + r] * B[n * R + r];
      Y[m * N + n] += Math.fround(scale) * s;
    }
  }
}

/** Twin of the `decode_qkv` entry: x1 = rmsnorm(h; w, eps), then for each projection j with an
 *  adapter Y_j = scale · (x1 · A_jᵀ) · B_jᵀ (assigned, not added). */
export function loraForwardQkvRef(
  Y: (Float32Array | undefined)[], // per projection (M, N_j) out, undefined = no adapter (left alone)
  x1: Float32Array, // (M, K) out
  h: Float32Array, // (M, K)
  w: Float32Array, // (K)
  slots: ({ A: Float32Array; B: Float32Array; N: number } | undefined)[],
  M: number,
  K: number,
  R: number,
  scale: number,
  eps: number,
): void {
  rmsnormForwardRef(x1, new Float32Array(M), h, w, M, K, eps);
  slots.forEach((s, j) => {
    if (!s) return;
    const y = Y[j]!;
    y.fill(0);
    loraForwardRef(y, new Float32Array(M * R), x1, s.A, s.B, M, s.N, K, R, scale);
  });
}
