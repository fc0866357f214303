// CPU twin of shaders/matmul_nf4.wgsl: Y (=|+=) X · dequant(W)ᵀ (+ bias), f64 accumulation over
// f32 inputs (the GPU accumulates in f32 in tile order; the test tolerance covers the difference).
import { NF4_BLOCKSIZE } from '../quant/nf4.ts';
import { nf4DequantizeRef } from './nf4_dequantize.ref.ts';

export function matmulNf4Ref(
  Y: Float32Array, // (M, N) out; added to when accumulate
  X: Float32Array, // (M, K)
  Wq: Uint32Array, // (ceil(N*K / 8)) packed NF4 of W (N, K)
  absmax: Float32Array | Uint32Array, // (ceil(N*K / blocksize)) f32, or the DQ words when doubleQuant
  bias: Float32Array | undefined, // (N)
  M: number,
  N: number,
  K: number,
  opts: { accumulate?: boolean; blocksize?: number; doubleQuant?: boolean } = {},
): void {
  const W = new Float32Array(N * K); // (N, K): fine on the CPU, never done on the GPU
  nf4DequantizeRef(W, Wq, absmax, N * K, opts.blocksize ?? NF4_BLOCKSIZE, opts.doubleQuant);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += X[m * K + k] * W[n * K + k];
      if (bias) s += bias[n];
      Y[m * N + n] = opts.accumulate ? Y[m * N + n] + s : s;
    }
  }
}
