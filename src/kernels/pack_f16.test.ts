import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Gpu } from '../gpu/runtime.ts';
import { rand } from '../testing/compare.ts';
import { packF16Gpu, unpackF16Gpu } from './pack_f16.ts';
import { packF16Ref, storedF16, unpackF16Ref } from './pack_f16.ref.ts';

/** Values across the f16 range: normals of both signs, subnormals, exact halves (ties), zeros and
 *  values past 65504 that must saturate. */
function values(n: number, seed: number): Float32Array {
  const x = rand(n, seed, -300, 300);
  const special = [0, -0, 65504, 65519, 65520, -1e6, 1e9, 2 ** -24, 2 ** -25, 3 * 2 ** -25, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 6e-8, -1e-5];
  for (let k = 0; k < special.length && k * 7 < n; k++) x[k * 7] = special[k];
  for (let i = 1; i < n; i += 5) x[i] *= 1e-4; // small magnitudes: subnormal rounding
  return x;
}

describe('pack_f16 twin', () => {
  test('saturates at ±65504 instead of rounding to infinity; otherwise rounds as torch .half()', () => {
    expect(Array.from(storedF16(Float32Array.of(65519, 65520, -1e9, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 2 ** -25, 3 * 2 ** -25))))
      .toEqual([65504, 65504, -65504, 1, 1 + 2 ** -9, 0, 2 ** -23]);
  });
});

describe('pack_f16 kernel', () => {
  let gpu: Gpu;
  beforeAll(async () => {
    gpu = await Gpu.create();
  });
  afterAll(() => gpu?.destroy());

  // Odd counts leave a half word; none of the word counts is a multiple of the 256-wide workgroup.
  test.each([1, 2, 3, 1025, 140_001])('pack and unpack equal their twins at n=%i', async (n) => {
    const x = values(n, n);
    const words = Math.ceil(n / 2);
    const wT = gpu.tensor('w', 'activations', new Uint32Array(words).fill(0xdeadbeef)); // garbage: every word is written
    packF16Gpu(gpu, wT, gpu.tensor('x', 'activations', x), n);
    const w = new Uint32Array(await gpu.read(wT, 0, words * 4));
    expect(Array.from(w)).toEqual(Array.from(packF16Ref(x)));
    const yT = gpu.tensor('y', 'activations', rand(n + 1, 3)); // one past n: must stay untouched
    const past = (await gpu.readF32(yT))[n];
    unpackF16Gpu(gpu, yT, wT, n);
    const y = await gpu.readF32(yT);
    expect(Array.from(y.subarray(0, n))).toEqual(Array.from(unpackF16Ref(w, n)));
    expect(y[n]).toBe(past);
  });

  test('works on 256-byte aligned views of larger buffers', async () => {
    const n = 200, x = values(n + 64, 9);
    const xT = gpu.tensor('x', 'activations', x), wT = gpu.tensor('w', 'activations', 4 * 300);
    packF16Gpu(gpu, { tensor: wT, offset: 256, size: n * 2 }, { tensor: xT, offset: 256, size: n * 4 }, n);
    const w = new Uint32Array(await gpu.read(wT, 256, n * 2));
    expect(Array.from(w)).toEqual(Array.from(packF16Ref(x.subarray(64, 64 + n))));
  });
});
