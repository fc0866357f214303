// CPU twin of shaders/matmul_f16.wgsl: the operands are rounded to f16 (what storing them as f16
// does), then multiplied exactly as the f32 twin does (f64 accumulation, one f32 rounding).
// Node 20 has no Math.f16round / Float16Array, so the conversion is written out here.
import { matmulRef, type MatmulOptions } from './matmul.ref.ts';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE binary16 bits of x, rounded to nearest with ties to even (x is first rounded to f32, as a
 *  Float32Array would hold it). Overflow gives ±Inf; NaN stays a (quiet) NaN. */
export function f32ToF16Bits(x: number): number {
  f32[0] = x;
  const bits = u32[0];
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 127 + 15; // biased f16 exponent
  if (e >= 0x1f) return sign | 0x7c00; // at or past 2^16: infinity
  if (e >= 1) {
    // Normal: keep 10 of the 23 mantissa bits. A carry out of the mantissa bumps the exponent, which
    // is right (and turns 65520 and up into infinity).
    let h = (e << 10) | (mant >>> 13);
    const rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h++;
    return sign | h;
  }
  // Subnormal or zero: count in units of 2^-24. |x| < 2^-25 rounds to zero (2^-25 itself is a tie,
  // which goes to the even 0).
  if (e < -10) return sign;
  const sig = mant | 0x800000; // 24-bit significand, |x| = sig * 2^(exp - 150)
  const shift = 14 - e; // 14..24: sig >> shift is |x| in units of 2^-24
  let h = sig >>> shift;
  const rest = sig & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  if (rest > half || (rest === half && (h & 1) === 1)) h++; // 0x3ff + 1 = 0x400 is the smallest normal
  return sign | h;
}

/** The value of IEEE binary16 bits h. */
export function f16BitsToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 0x1f) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** x rounded to the nearest f16 (what Math.f16round does where it exists). */
export function f16Round(x: number): number {
  return f16BitsToF32(f32ToF16Bits(x));
}

/** The f16 bit patterns of an array, ready to upload as an `array<f16>` buffer. */
export function toF16(x: Float32Array): Uint16Array {
  return Uint16Array.from(x, f32ToF16Bits);
}

export function matmulF16Ref(
  c: Float32Array, // (batch, M, N) out, f32
  a: Float32Array, // (batch, M, K), or (batch, K, M) when transA; rounded to f16 here
  b: Float32Array, // (batch, K, N), or (batch, N, K) when transB; rounded to f16 here
  M: number,
  N: number,
  K: number,
  opts: MatmulOptions = {},
): void {
  matmulRef(c, a.map(f16Round), b.map(f16Round), M, N, K, opts);
}
