// NF4 (bitsandbytes 4-bit NormalFloat) on the CPU: the codebook, the rounding thresholds, and the
// quantize / dequantize / double-quantization routines that the GPU kernels are checked against.
// Everything here follows bitsandbytes' torch reference path (functional.py quantize_4bit,
// backends/default/ops.py), as docs/nf4.md describes it:
//   - W (N, K) row-major is flattened; blocks of `blocksize` (64) consecutive elements run along
//     the flat index, so a block can cross a row when K % 64 != 0. A short tail block gets its own
//     absmax.
//   - absmax[b] = max |x| (f32), inv = fround(1 / max(absmax, 1e-38)), scaled = fround(x * inv),
//     code = bucketize(scaled, midpoints) with ties to the LOWER code.
//   - packed byte k = code[2k] << 4 | code[2k + 1] (first element in the high nibble); an odd total
//     is padded with code 7 (the value 0.0).
// On the GPU the packed bytes live in a u32 storage array, little-endian: word w holds bytes
// 4w..4w+3. Bytes past the packed length are filled with 0x77 (code 7, i.e. 0.0), which is also what
// the quantize kernel writes there, so twin and kernel agree on whole words.

const f32 = (bits: number): number => new Float32Array(new Uint32Array([bits]).buffer)[0];

/** NF4 codebook (the hard-coded table of bitsandbytes get_4bit_type("nf4"); docs/nf4.md), index = 4-bit code. */
export const NF4_BITS = [
  0xbf800000, 0xbf3239b1, 0xbf066b30, 0xbeca32a0, 0xbe91a24d, 0xbe3d353f, 0xbdba7871, 0x00000000,
  0x3da2faff, 0x3e24cae3, 0x3e7c04dd, 0x3ead033a, 0x3ee1a4b8, 0x3f1007ab, 0x3f3913b3, 0x3f800000,
] as const;
export const NF4 = Float32Array.from(NF4_BITS, f32);

/** f32 midpoints (code[i] + code[i+1]) / 2 between adjacent codes; code k wins when T[k-1] < x <= T[k]. */
export const NF4_THRESHOLD_BITS = [
  0xbf591cd8, 0xbf1c5270, 0xbeeb8480, 0xbeadea76, 0xbe703cec, 0xbe0d38bc, 0xbd3a7871, 0x3d22faff,
  0x3df64862, 0x3e5067e0, 0x3e9582d4, 0x3ec753f9, 0x3f006d04, 0x3f248daf, 0x3f5c89da,
] as const;
export const NF4_THRESHOLDS = Float32Array.from(NF4_THRESHOLD_BITS, f32);

/** The code that zero maps to, and the padding nibble bitsandbytes uses for an odd length. */
export const NF4_ZERO_CODE = 7;
export const NF4_BLOCKSIZE = 64;
/** torch reference clamps absmax to this before the reciprocal (f32 value, a subnormal). */
export const ABSMAX_FLOOR = Math.fround(1e-38);

/** Nearest NF4 code of a scaled value in [-1, 1]: count the thresholds strictly below x (ties -> lower). */
export function nf4Code(x: number): number {
  let k = 0;
  while (k < 15 && x > NF4_THRESHOLDS[k]) k++;
  return k;
}

export interface Nf4Tensor {
  /** (n + 1) >> 1 bytes, byte k = code[2k] << 4 | code[2k+1]. */
  packed: Uint8Array;
  /** One f32 per block of the flattened tensor: ceil(n / blocksize). */
  absmax: Float32Array;
}

/** bitsandbytes quantize_4bit (nf4), torch reference path, on a flattened f32 tensor. */
export function quantizeNF4(w: Float32Array, blocksize = NF4_BLOCKSIZE): Nf4Tensor {
  const n = w.length;
  const nb = Math.ceil(n / blocksize);
  const absmax = new Float32Array(nb);
  const packed = new Uint8Array((n + 1) >> 1);
  for (let b = 0; b < nb; b++) {
    const lo = b * blocksize, hi = Math.min(n, lo + blocksize);
    let m = 0;
    for (let i = lo; i < hi; i++) m = Math.max(m, Math.abs(w[i]));
    absmax[b] = m;
    // 1/m is correctly rounded in f64, then rounded again to f32; double rounding is innocuous for
    // a quotient (f64 has more than 2*24+2 bits), so this is the correctly rounded f32 reciprocal.
    const inv = Math.fround(1 / Math.max(absmax[b], ABSMAX_FLOOR));
    for (let i = lo; i < hi; i++) {
      const scaled = Math.max(-1, Math.min(1, Math.fround(w[i] * inv)));
      const q = nf4Code(scaled);
      packed[i >> 1] |= i & 1 ? q : q << 4;
    }
  }
  if (n & 1) packed[n >> 1] |= NF4_ZERO_CODE; // torch pads the scaled tensor with one 0.0
  return { packed, absmax };
}

/** Code of flat element i in a packed byte array. */
export function codeAt(packed: Uint8Array, i: number): number {
  const byte = packed[i >> 1];
  return i & 1 ? byte & 15 : byte >> 4;
}

/** All n codes, unpacked (for comparing with goldens that store codes). */
export function unpackCodes(packed: Uint8Array, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = codeAt(packed, i);
  return out;
}

/** w[i] = NF4[code_i] * absmax[i / blocksize], the product in f32 (bitsandbytes keeps it in f32). */
export function dequantizeNF4(packed: Uint8Array, absmax: Float32Array, n: number, blocksize = NF4_BLOCKSIZE): Float32Array {
  const w = new Float32Array(n);
  for (let i = 0; i < n; i++) w[i] = Math.fround(NF4[codeAt(packed, i)] * absmax[Math.floor(i / blocksize)]);
  return w;
}

/** Number of u32 words the GPU uses for n packed codes: ceil(n / 8). */
export function nf4Words(n: number): number {
  return Math.ceil(n / 8);
}

/** Packed bytes -> little-endian u32 words, bytes past the end set to 0x77 (code 7 = 0.0). */
export function packWords(packed: Uint8Array, n: number): Uint32Array {
  const words = new Uint32Array(nf4Words(n));
  const bytes = new Uint8Array(words.length * 4).fill(0x77);
  bytes.set(packed.subarray(0, (n + 1) >> 1));
  for (let w = 0; w < words.length; w++) {
    words[w] = (bytes[4 * w] | (bytes[4 * w + 1] << 8) | (bytes[4 * w + 2] << 16) | (bytes[4 * w + 3] << 24)) >>> 0;
  }
  return words;
}

/** Little-endian u32 words -> the first (n + 1) >> 1 packed bytes. */
export function unpackWords(words: Uint32Array, n: number): Uint8Array {
  const out = new Uint8Array((n + 1) >> 1);
  for (let k = 0; k < out.length; k++) out[k] = (words[k >> 2] >>> (8 * (k & 3))) & 0xff;
  return out;
}

// ------------------------------------------------------------------------------------------------
// Double quantization (QLoRA "DQ", bitsandbytes compress_statistics; docs/nf4.md#double-quantization): absmax itself is quantized to
// 8 bits with the bitsandbytes dynamic map, in blocks of 256, after subtracting its mean. The
// quantization runs here on the CPU at load (absmax is 1/64 of the weight count); the GPU keeps the
// 8-bit codes and dequantizes them inside the NF4 kernels (packDoubleQuant below has the layout).

/**
 * bitsandbytes create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8), computed the way
 * a numpy float32 regeneration does (linspace in f64 then cast to f32, means and products in f32).
 * The unit test pins all 256 values. torch.linspace may differ from this by an ulp in
 * some entries; checkpoints carry their own `nested_quant_map`, which should be preferred.
 */
export function createDynamicMap(): Float32Array {
  const data: number[] = [];
  const maxExponentBits = 7, nonSignBits = 7;
  const scales = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1]; // 10 ** (-(7 - 1) + i), exact literals
  for (let i = 0; i < maxExponentBits; i++) {
    const items = 2 ** (i + nonSignBits - maxExponentBits) + 1;
    // numpy linspace(0.1, 1, items): start + j * step in f64, last element exactly `stop`.
    const step = (1 - 0.1) / (items - 1);
    const b = new Float32Array(items);
    for (let j = 0; j < items; j++) b[j] = j === items - 1 ? 1 : 0.1 + j * step;
    const s = Math.fround(scales[i]);
    for (let j = 0; j < items - 1; j++) {
      const mean = Math.fround(Math.fround(b[j] + b[j + 1]) / 2);
      data.push(Math.fround(s * mean), -Math.fround(s * mean));
    }
  }
  data.push(0, 1);
  return Float32Array.from(data).sort();
}

export const DYNAMIC_MAP = createDynamicMap();

/** f32 midpoints of a sorted code table, as torch computes (code[:-1] + code[1:]) / 2. */
export function midpoints(code: Float32Array): Float32Array {
  const out = new Float32Array(code.length - 1);
  for (let i = 0; i < out.length; i++) out[i] = Math.fround(Math.fround(code[i] + code[i + 1]) / 2);
  return out;
}

/**
 * bitsandbytes quantize_blockwise, reference form: absmax2 per block of `blocksize`, scaled =
 * clamp(x * fround(1 / absmax2), -1, 1), code = bucketize on the midpoints (ties -> lower code).
 */
export function quantizeBlockwise(
  a: Float32Array,
  code: Float32Array = DYNAMIC_MAP,
  blocksize = 256,
): { q: Uint8Array; absmax: Float32Array } {
  const n = a.length, nb = Math.ceil(n / blocksize);
  const mid = midpoints(code);
  const q = new Uint8Array(n), absmax = new Float32Array(nb);
  for (let b = 0; b < nb; b++) {
    const lo = b * blocksize, hi = Math.min(n, lo + blocksize);
    let m = 0;
    for (let i = lo; i < hi; i++) m = Math.max(m, Math.abs(a[i]));
    absmax[b] = m;
    const inv = Math.fround(1 / Math.max(absmax[b], ABSMAX_FLOOR));
    for (let i = lo; i < hi; i++) {
      const x = Math.max(-1, Math.min(1, Math.fround(a[i] * inv)));
      let k = 0;
      while (k < mid.length && x > mid[k]) k++;
      q[i] = k;
    }
  }
  return { q, absmax };
}

/** out[i] = code[q[i]] * absmax[i / blocksize] in f32. */
export function dequantizeBlockwise(q: Uint8Array, absmax: Float32Array, code: Float32Array = DYNAMIC_MAP, blocksize = 256): Float32Array {
  const out = new Float32Array(q.length);
  for (let i = 0; i < q.length; i++) out[i] = Math.fround(code[q[i]] * absmax[Math.floor(i / blocksize)]);
  return out;
}

export interface DoubleQuantState {
  /** One u8 per first-level block. */
  qabsmax: Uint8Array;
  /** f32, one per 256 first-level blocks (bitsandbytes state2.absmax). */
  absmax2: Float32Array;
  /** f32 mean of the first-level absmax (bitsandbytes `offset`). */
  offset: number;
  code: Float32Array;
}

/**
 * offset = mean(absmax); (qabsmax, absmax2) = quantize_blockwise(absmax - offset, 256).
 * The mean is taken in f64 and rounded to f32; torch sums in f32 (pairwise), so `offset` can differ
 * from bitsandbytes' by an ulp. Given the same offset the 8-bit codes are identical.
 */
export function doubleQuantize(absmax: Float32Array, code: Float32Array = DYNAMIC_MAP, blocksize = 256): DoubleQuantState {
  let s = 0;
  for (let i = 0; i < absmax.length; i++) s += absmax[i];
  const offset = Math.fround(s / absmax.length);
  return { ...doubleQuantizeWithOffset(absmax, offset, code, blocksize), offset, code };
}

/** The same with a given offset (e.g. one read from a checkpoint or computed by torch). */
export function doubleQuantizeWithOffset(
  absmax: Float32Array,
  offset: number,
  code: Float32Array = DYNAMIC_MAP,
  blocksize = 256,
): { qabsmax: Uint8Array; absmax2: Float32Array } {
  const centred = new Float32Array(absmax.length);
  for (let i = 0; i < absmax.length; i++) centred[i] = Math.fround(absmax[i] - offset);
  const { q, absmax: absmax2 } = quantizeBlockwise(centred, code, blocksize);
  return { qabsmax: q, absmax2 };
}

/** Back to the f32 absmax the GPU kernels take: code[q] * absmax2[i / 256] + offset, in f32. */
export function doubleDequantize(s: DoubleQuantState, blocksize = 256): Float32Array {
  const out = dequantizeBlockwise(s.qabsmax, s.absmax2, s.code, blocksize);
  for (let i = 0; i < out.length; i++) out[i] = Math.fround(out[i] + s.offset);
  return out;
}

// ------------------------------------------------------------------------------------------------
// The GPU form of a double-quantized absmax: one u32 array per weight, nb = ceil(n / 64) blocks.
//   words [0, ceil(nb / 4))            the 8-bit codes, block b in byte (b & 3) of word b >> 2
//                                      (little-endian: the bytes of bitsandbytes' uint8 tensor)
//   next ceil(nb / 256) words          absmax2, the f32 scale of each run of 256 codes (state2.absmax)
//   last word                          offset, the f32 mean added back (bitsandbytes `offset`)
// The code table is not stored: it is always DYNAMIC_MAP, which the kernels hold as a constant.
// 1 byte per 64 weights plus 4 bytes per 16384 weights, against 4 bytes per 64 for f32 absmax.

export const DQ_BLOCKSIZE = 256;

/** u32 words of the GPU form for nBlocks first-level blocks. */
export function dqWords(nBlocks: number): number {
  return Math.ceil(nBlocks / 4) + Math.ceil(nBlocks / DQ_BLOCKSIZE) + 1;
}

/** A DoubleQuantState (blocks of 256, the dynamic map) as the u32 words the NF4 kernels read. */
export function packDoubleQuant(s: DoubleQuantState): Uint32Array {
  const nb = s.qabsmax.length;
  if (s.code.length !== DYNAMIC_MAP.length || s.code.some((v, i) => !Object.is(v, DYNAMIC_MAP[i]))) {
    throw new RangeError('packDoubleQuant: the kernels decode with the bitsandbytes dynamic map only');
  }
  if (s.absmax2.length !== Math.ceil(nb / DQ_BLOCKSIZE)) {
    throw new RangeError(`packDoubleQuant: ${s.absmax2.length} second-level scales for ${nb} codes, expected blocks of ${DQ_BLOCKSIZE}`);
  }
  const words = new Uint32Array(dqWords(nb));
  const q = Math.ceil(nb / 4);
  for (let b = 0; b < nb; b++) words[b >> 2] |= s.qabsmax[b] << (8 * (b & 3));
  const f = new Float32Array(words.buffer);
  f.set(s.absmax2, q);
  f[q + s.absmax2.length] = s.offset;
  return words;
}

/**
 * The f32 absmax of every block, read from the GPU form the way the kernels read it:
 * fround(fround(DYNAMIC_MAP[code] * absmax2[b / 256]) + offset). The CPU twins use this.
 */
export function dqAbsmax(words: Uint32Array, nBlocks: number): Float32Array {
  const q = Math.ceil(nBlocks / 4), nb2 = Math.ceil(nBlocks / DQ_BLOCKSIZE);
  if (words.length < q + nb2 + 1) throw new RangeError(`dqAbsmax: ${words.length} words hold fewer than ${nBlocks} blocks`);
  const f = new Float32Array(words.buffer, words.byteOffset, words.length);
  const offset = f[q + nb2];
  const out = new Float32Array(nBlocks);
  for (let b = 0; b < nBlocks; b++) {
    const code = (words[b >> 2] >>> (8 * (b & 3))) & 0xff;
    out[b] = Math.fround(Math.fround(DYNAMIC_MAP[code] * f[q + Math.floor(b / DQ_BLOCKSIZE)]) + offset);
  }
  return out;
}

/** f32 absmax -> its double quantization (offset = mean, dynamic map) in the GPU form. */
export function doubleQuantWords(absmax: Float32Array): Uint32Array {
  return packDoubleQuant(doubleQuantize(absmax));
}
