// f32 -> 16-bit float encodings, rounded to nearest with ties to even, as torch's `.to(bfloat16)`
// (c10/util/BFloat16.h round_to_nearest_even) and `.to(float16)` (IEEE 754 conversion) do. The
// reverse direction (16-bit -> f32, exact) lives in src/io/safetensors.ts.

const f32Buf = new Float32Array(1);
const u32Buf = new Uint32Array(f32Buf.buffer);

/** bf16 bits of fround(x): the top half of the f32, rounded to nearest even; NaN stays a quiet NaN. */
export function bf16Bits(x: number): number {
  f32Buf[0] = x;
  const b = u32Buf[0];
  if (Number.isNaN(x)) return ((b >>> 16) & 0x8000) | 0x7fc0;
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

function roundHalfEven(q: number): number {
  const f = Math.floor(q), d = q - f;
  return d > 0.5 || (d === 0.5 && f % 2 === 1) ? f + 1 : f;
}

/** IEEE half bits of fround(x), round to nearest even; overflow goes to infinity, NaN to 0x7e00. */
export function f16Bits(x: number): number {
  const v = Math.fround(x);
  if (Number.isNaN(v)) return 0x7e00;
  const sign = v < 0 || Object.is(v, -0) ? 0x8000 : 0;
  const a = Math.abs(v);
  if (a === Infinity) return sign | 0x7c00;
  if (a < 2 ** -14) return sign | roundHalfEven(a / 2 ** -24); // subnormal (1024 rounds up to the smallest normal, bits 0x400)
  f32Buf[0] = a;
  let e = ((u32Buf[0] >>> 23) & 0xff) - 127;
  // Scaling by a power of two and by 1024 is exact in f64, so one rounding happens, at roundHalfEven.
  let m = roundHalfEven((a / 2 ** e - 1) * 1024);
  if (m === 1024) {
    m = 0;
    e++;
  }
  if (e + 15 >= 31) return sign | 0x7c00;
  return sign | ((e + 15) << 10) | m;
}

/** Little-endian 16-bit encoding of a whole array. */
export function encode16(values: Float32Array, dtype: 'F16' | 'BF16'): Uint8Array {
  const out = new Uint16Array(values.length);
  const enc = dtype === 'F16' ? f16Bits : bf16Bits;
  for (let i = 0; i < values.length; i++) out[i] = enc(values[i]);
  return littleEndianBytes(out);
}

/** The bytes of a typed array in little-endian order (a view on little-endian hosts, all of them in practice). */
export function littleEndianBytes(a: Uint16Array | Float32Array): Uint8Array {
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] === 1) return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const out = new Uint8Array(a.byteLength), dv = new DataView(out.buffer);
  for (let i = 0; i < a.length; i++) a instanceof Float32Array ? dv.setFloat32(4 * i, a[i], true) : dv.setUint16(2 * i, a[i], true);
  return out;
}
