// CPU twin of shaders/matvec_nf4.wgsl: Y (=|+=) X · dequant(W)ᵀ (+ bias), decoding each code from
// the packed words as it goes. f64 accumulation over the f32 dequantized weights (the GPU sums
// codebook values in f32 and scales once per 32 codes; the test tolerance covers the difference).
import { NF4, NF4_BLOCKSIZE } from '../quant/nf4.ts';
import { blockScales } from './nf4_dequantize.ref.ts';

export interface MatvecNf4Options {
  /** Y += X·Wᵀ (+ bias) instead of Y = ... */
  accumulate?: boolean;
  blocksize?: number;
  /** absmax is the double-quantized words of src/quant/nf4.ts packDoubleQuant, not f32. */
  doubleQuant?: boolean;
}

export function matvecNf4Ref(
  Y: Float32Array, // (M, N) out; added to when accumulate
  X: Float32Array, // (M, K)
  Wq: Uint32Array, // (ceil(N*K / 8)) packed NF4 of W (N, K)
  absmax: Float32Array | Uint32Array, // (ceil(N*K / blocksize)) f32, or the DQ words when doubleQuant
  bias: Float32Array | undefined, // (N)
  M: number,
  N: number,
  K: number,
  opts: MatvecNf4Options = {},
): void {
  const BS = opts.blocksize ?? NF4_BLOCKSIZE;
  const scale = blockScales(absmax, N * K, BS, opts.doubleQuant);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) {
        const f = n * K + k; // flat index into W: blocks run along it and may cross rows
        const byte = (Wq[f >> 3] >>> (8 * ((f >> 1) & 3))) & 0xff;
        const code = f & 1 ? byte & 15 : byte >> 4; // even element in the high nibble
        s += X[m * K + k] * Math.fround(NF4[code] * scale[Math.floor(f / BS)]);
      }
      if (bias) s += bias[n];
      Y[m * N + n] = opts.accumulate ? Y[m * N + n] + s : s;
    }
  }
}
