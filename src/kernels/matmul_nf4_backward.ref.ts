// CPU twin of shaders/matmul_nf4_backward.wgsl: dX (=|+=) dY · dequant(W), f64 accumulation.
// Checked against PyTorch autograd (fixtures/goldens/nf4.json) and by finite differences.
import { NF4_BLOCKSIZE } from '../quant/nf4.ts';
import { nf4DequantizeRef } from './nf4_dequantize.ref.ts';

export function matmulNf4BackwardRef(
  dX: Float32Array, // (M, K) out; added to when accumulate
  dY: Float32Array, // (M, N)
  Wq: Uint32Array, // (ceil(N*K / 8)) packed NF4 of W (N, K)
  absmax: Float32Array | Uint32Array, // (ceil(N*K / blocksize)) f32, or the DQ words when doubleQuant
  M: number,
  N: number,
  K: number,
  opts: { accumulate?: boolean; blocksize?: number; doubleQuant?: boolean } = {},
): void {
  const W = new Float32Array(N * K);
  nf4DequantizeRef(W, Wq, absmax, N * K, opts.blocksize ?? NF4_BLOCKSIZE, opts.doubleQuant);
  for (let m = 0; m < M; m++) {
    for (let k = 0; k < K; k++) {
      let s = 0;
      for (let n = 0; n < N; n++) s += dY[m * N + n] * W[n * K + k];
      dX[m * K + k] = opts.accumulate ? dX[m * K + k] + s : s;
    }
  }
}
