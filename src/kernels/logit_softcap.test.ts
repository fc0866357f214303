import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Gpu } from '../gpu/runtime.ts';
import { assertClose, rand } from '../testing/compare.ts';
import { logitSoftcap } from './logit_softcap.ts';
import { logitSoftcapRef } from './logit_softcap.ref.ts';

describe('logit_softcap twin', () => {
  test('is odd, bounded by the cap, and the identity near 0', () => {
    const x = Float32Array.from([0, 1e-3, -1e-3, 30, -30, 1e4, -1e4]);
    logitSoftcapRef(x, x.length, 30);
    expect(x[0]).toBe(0);
    expect(x[1]).toBeCloseTo(1e-3, 8);
    expect(x[2]).toBeCloseTo(-1e-3, 8);
    expect(x[3]).toBeCloseTo(30 * Math.tanh(1), 4);
    expect(x[4]).toBeCloseTo(-30 * Math.tanh(1), 4);
    expect(x[5]).toBe(30);
    expect(x[6]).toBe(-30);
  });
});

describe('logit_softcap kernel', () => {
  let gpu: Gpu;
  beforeAll(async () => {
    gpu = await Gpu.create();
  });
  afterAll(() => gpu?.destroy());

  // Counts ragged against the 256-thread workgroup; logits far past the cap (and 1e30, where a
  // sinh/cosh tanh overflows); 16.8M elements need a 2-D workgroup grid.
  test.each([
    [1, 30, 5],
    [517, 30, 200],
    [1000, 2, 3],
    [66_000 * 256 + 3, 50, 100],
  ])('equals its twin at n=%i cap=%f range=%f', async (n, cap, range) => {
    const x = rand(n, n % 1000, -range, range);
    if (n > 2) {
      x[1] = 1e30;
      x[2] = -1e30;
    }
    const xT = gpu.tensor('x', 'scratch', x);
    logitSoftcap(gpu, xT, n, cap);
    const want = x.slice();
    logitSoftcapRef(want, n, cap);
    assertClose('x', await gpu.readF32(xT), want, { atol: 2e-6 * cap, rtol: 1e-5 });
  });
});
