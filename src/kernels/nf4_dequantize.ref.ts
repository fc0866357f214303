// CPU twin of shaders/nf4_dequantize.wgsl: w[i] = NF4[code_i] * absmax[i / blocksize] in f32.
import { NF4, NF4_BLOCKSIZE, dqAbsmax } from '../quant/nf4.ts';

// Re-exported for src/model/plan.ts, which sizes packed weights from here; the home is src/quant/nf4.ts.
export { nf4Words } from '../quant/nf4.ts';

/**
 * The f32 scale of every block of an n-element weight: `absmax` itself, or with doubleQuant the
 * words of src/quant/nf4.ts packDoubleQuant decoded (what the kernels' blockScale computes).
 */
export function blockScales(absmax: Float32Array | Uint32Array, n: number, blocksize = NF4_BLOCKSIZE, doubleQuant = false): Float32Array {
  if (doubleQuant) {
    if (!(absmax instanceof Uint32Array)) throw new TypeError('double-quantized absmax must be the packed Uint32Array words');
    return dqAbsmax(absmax, Math.ceil(n / blocksize));
  }
  if (!(absmax instanceof Float32Array)) throw new TypeError('absmax must be a Float32Array without doubleQuant');
  return absmax;
}

export function nf4DequantizeRef(
  w: Float32Array, // (n) = (N, K) flattened, out
  packed: Uint32Array, // (ceil(n / 8)) little-endian words
  absmax: Float32Array | Uint32Array, // (ceil(n / blocksize)) f32, or the DQ words when doubleQuant
  n: number,
  blocksize = NF4_BLOCKSIZE,
  doubleQuant = false,
): void {
  const scale = blockScales(absmax, n, blocksize, doubleQuant);
  for (let i = 0; i < n; i++) {
    const byte = (packed[i >> 3] >>> (8 * ((i >> 1) & 3))) & 0xff;
    const code = i & 1 ? byte & 15 : byte >> 4; // even element in the high nibble
    w[i] = Math.fround(NF4[code] * scale[Math.floor(i / blocksize)]);
  }
}
