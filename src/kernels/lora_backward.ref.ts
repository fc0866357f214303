// CPU twin of shaders/lora_backward.wgsl. Checked against PyTorch autograd (fixtures/goldens/lora.json)
// and by finite differences. f32 storage, f64 accumulation.
import { dropoutRef } from './lora_forward.ref.ts';

export function loraBackwardRef(
  dX: Float32Array, // (M, K) in: the base layer's dX, out: plus the LoRA branch's
  dA: Float32Array, // (R, K) out; added to when accumulate
  dB: Float32Array, // (N, R) out; added to when accumulate
  dU: Float32Array, // (M, R) out (scratch): scale * dY B
  dY: Float32Array, // (M, N)
  x: Float32Array, // (M, K)
  A: Float32Array, // (R, K)
  B: Float32Array, // (N, R)
  U: Float32Array, // (M, R) saved by the forward
  M: number,
  N: number,
  K: number,
  R: number,
  scale: number,
  dropout = 0,
  seed = 0,
  accumulate = false,
): void {
  const s32 = Math.fround(scale);
  const xd = dropoutRef(x, seed, dropout);
  // The mask times 1/(1-p), per element of x: what dropout's backward multiplies by.
  const keepScale = dropoutRef(new Float32Array(M * K).fill(1), seed, dropout);
  for (let m = 0; m < M; m++) {
    for (let r = 0; r < R; r++) {
      let s = 0;
      for (let n = 0; n < N; n++) s += dY[m * N + n] * B[n * R + r];
      dU[m * R + r] = s32 * s;
    }
  }
  for (let n = 0; n < N; n++) {
    for (let r = 0; r < R; r++) {
      let s = 0;
      for (let m = 0; m < M; m++) s += dY[m * N + n] * U[m * R + r];
      const v = s32 * s;
      dB[n * R + r] = accumulate ? dB[n * R + r] + v : v;
    }
  }
  for (let r = 0; r < R; r++) {
    for (let k = 0; k < K; k++) {
      let s = 0;
      for (let m = 0; m < M; m++) s += dU[m * R + r] * xd[m * K + k];
      dA[r * K + k] = accumulate ? dA[r * K + k] + s : s;
    }
  }
  for (let m = 0; m < M; m++) {
    for (let k = 0; k < K; k++) {
      let s = 0;
      for (let r = 0; r < R; r++) s += dU[m * R + r] * A[r * K + k];
      dX[m * K + k] += keepScale[m * K + k] * s;
    }
  }
}
