// CPU twin of shaders/nf4_quantize.wgsl: bitsandbytes quantize_4bit (nf4, torch reference path),
// written out as plain loops (src/quant/nf4.ts quantizeNF4 is the same algorithm producing bytes;
// the unit tests hold both to the PyTorch golden). Outputs the GPU layout: little-endian u32 words,
// codes past n set to 7.
import { ABSMAX_FLOOR, NF4_BLOCKSIZE, NF4_ZERO_CODE, nf4Code } from '../quant/nf4.ts';

export function nf4QuantizeRef(
  packed: Uint32Array, // (ceil(n / 8)) out
  absmax: Float32Array, // (ceil(n / blocksize)) out
  w: Float32Array, // (n) = (N, K) flattened
  n: number,
  blocksize = NF4_BLOCKSIZE,
): void {
  const nb = Math.ceil(n / blocksize);
  const codes = new Uint8Array(packed.length * 8).fill(NF4_ZERO_CODE);
  for (let b = 0; b < nb; b++) {
    const lo = b * blocksize, hi = Math.min(n, lo + blocksize);
    let m = 0;
    for (let i = lo; i < hi; i++) m = Math.max(m, Math.abs(w[i]));
    absmax[b] = m;
    // Correctly rounded f32 reciprocal: the f64 quotient rounded to f32 (double rounding is harmless
    // for a quotient), as torch's f32 `1.0 / absmax` is.
    const inv = Math.fround(1 / Math.max(absmax[b], ABSMAX_FLOOR));
    for (let i = lo; i < hi; i++) codes[i] = nf4Code(Math.max(-1, Math.min(1, Math.fround(w[i] * inv))));
  }
  for (let j = 0; j < packed.length; j++) {
    let word = 0;
    for (let byte = 0; byte < 4; byte++) {
      const i = 8 * j + 2 * byte;
      word |= ((codes[i] << 4) | codes[i + 1]) << (8 * byte);
    }
    packed[j] = word >>> 0;
  }
}
