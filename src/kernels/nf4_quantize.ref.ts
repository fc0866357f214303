// CPU twin of shaders/nf4_quantize.wgsl: bitsandbytes quantize_4bit (nf4, torch reference path) as
// src/quant/nf4.ts defines it (held to the PyTorch golden there), in the GPU layout: little-endian
// u32 words, codes past n set to 7.
import { NF4_BLOCKSIZE, packWords, quantizeNF4 } from '../quant/nf4.ts';

export function nf4QuantizeRef(
  packed: Uint32Array, // (ceil(n / 8)) out
  absmax: Float32Array, // (ceil(n / blocksize)) out
  w: Float32Array, // (n) = (N, K) flattened
  n: number,
  blocksize = NF4_BLOCKSIZE,
): void {
  const q = quantizeNF4(w.subarray(0, n), blocksize);
  packed.set(packWords(q.packed, n));
  absmax.set(q.absmax);
}
