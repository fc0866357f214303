// CPU twin of shaders/matmul_packed_f16.wgsl: b is unpacked from its f16 pairs to f32 (exact), then
// multiplied as the f32 twin does (f64 accumulation, one f32 rounding). Also the packing itself:
// packF16 is how the loader turns an f32 table into the GPU form, rounding each value to the nearest
// f16 with ties to even, as torch's Tensor.half() does (f32ToF16Bits in matmul_f16.ref.ts).
import { matmulRef, type MatmulOptions } from './matmul.ref.ts';
import { f16BitsToF32, f32ToF16Bits } from './matmul_f16.ref.ts';

/** x rounded to f16, two values per u32 word: element e in the low half of word e/2 when e is even
 *  (WGSL pack2x16float order); an odd count leaves the last high half 0 (+0.0). */
export function packF16(x: Float32Array): Uint32Array {
  const words = new Uint32Array(Math.ceil(x.length / 2));
  for (let w = 0; w < words.length; w++) {
    const lo = f32ToF16Bits(x[2 * w]);
    const hi = 2 * w + 1 < x.length ? f32ToF16Bits(x[2 * w + 1]) : 0;
    words[w] = (lo | (hi << 16)) >>> 0;
  }
  return words;
}

/** The first n f16 values of packed words, widened to f32 (exact). */
export function unpackF16(words: Uint32Array, n: number): Float32Array {
  const out = new Float32Array(n);
  for (let e = 0; e < n; e++) out[e] = f16BitsToF32((words[e >> 1] >>> (16 * (e & 1))) & 0xffff);
  return out;
}

export function matmulPackedF16Ref(
  c: Float32Array, // (batch, M, N) out, f32
  a: Float32Array, // (batch, M, K), or (batch, K, M) when transA, f32
  b: Uint32Array, // (batch, K, N), or (batch, N, K) when transB: f16 elements, two per word
  M: number,
  N: number,
  K: number,
  opts: MatmulOptions = {},
): void {
  matmulRef(c, a, unpackF16(b, b.length * 2), M, N, K, opts);
}
