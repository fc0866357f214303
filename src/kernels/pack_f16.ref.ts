// CPU twin of shaders/pack_f16.wgsl: the loader's packF16 (round to nearest f16, ties to even, as
// torch's .half() does) after the shader's clamp to the finite f16 range, and its exact inverse.
import { packF16, unpackF16 } from './matmul_packed_f16.ref.ts';

const F16_MAX = 65504;

export function packF16Ref(x: Float32Array): Uint32Array {
  return packF16(x.map((v) => Math.min(F16_MAX, Math.max(-F16_MAX, v))));
}

export function unpackF16Ref(w: Uint32Array, n: number): Float32Array {
  return unpackF16(w, n);
}

/** What a value saved in f16 storage reads back as. */
export function storedF16(x: Float32Array): Float32Array {
  return unpackF16Ref(packF16Ref(x), x.length);
}
