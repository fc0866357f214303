// CPU twin of shaders/nf4_dequantize.wgsl: w[i] = NF4[code_i] * absmax[i / blocksize] in f32.
import { NF4, NF4_BLOCKSIZE } from '../quant/nf4.ts';

// Re-exported for src/model/plan.ts, which sizes packed weights from here; the home is src/quant/nf4.ts.
export { nf4Words } from '../quant/nf4.ts';

export function nf4DequantizeRef(
  w: Float32Array, // (n) = (N, K) flattened, out
  packed: Uint32Array, // (ceil(n / 8)) little-endian words
  absmax: Float32Array, // (ceil(n / blocksize))
  n: number,
  blocksize = NF4_BLOCKSIZE,
): void {
  for (let i = 0; i < n; i++) {
    const byte = (packed[i >> 3] >>> (8 * ((i >> 1) & 3))) & 0xff;
    const code = i & 1 ? byte & 15 : byte >> 4; // even element in the high nibble
    w[i] = Math.fround(NF4[code] * absmax[Math.floor(i / blocksize)]);
  }
}
