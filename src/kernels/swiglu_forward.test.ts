import { afterAll, beforeAll, describe, test } from 'vitest';
import { Gpu } from '../gpu/runtime.ts';
import { assertClose, goldenArray, loadGolden, rand } from '../testing/compare.ts';
import { swigluForward } from './swiglu_forward.ts';
import { swigluForwardRef } from './swiglu_forward.ref.ts';

const TOL = { atol: 1e-6, rtol: 1e-5 };

/** Gate values in [-8, 8) with a few far out in both tails, where a naive sigmoid overflows. */
function gateValues(n: number, seed: number): Float32Array {
  const g = rand(n, seed, -8, 8);
  const extremes = [100, -100, 1000, -1000, 88.8, -88.8, 0];
  for (let k = 0; k < extremes.length && k * 13 < n; k++) g[k * 13] = extremes[k];
  return g;
}

describe('swiglu_forward twin', () => {
  const golden = loadGolden('swiglu');
  test.each(Object.keys(golden))('matches PyTorch: %s', (name) => {
    const c = golden[name];
    const N = c.N as number, F = c.F as number;
    const h = new Float32Array(N * F);
    swigluForwardRef(h, goldenArray(c.g), goldenArray(c.u), N, F, (c as Record<string, unknown>).act === 'gelu_tanh' ? 'gelu_tanh' : 'silu');
    assertClose(`${name}.h`, h, goldenArray(c.h), TOL);
  });
});

describe('swiglu_forward kernel', () => {
  let gpu: Gpu;
  beforeAll(async () => {
    gpu = await Gpu.create();
  });
  afterAll(() => gpu?.destroy());

  // Element counts 1, 393, 2100 and 5000: none a multiple of the 256-thread workgroup.
  test.each([
    [1, 1],
    [3, 131],
    [7, 300],
    [5, 1000],
    [65_600, 257], // 65,857 workgroups: more than one grid dimension holds
  ].flatMap(([N, F]) => (['silu', 'gelu_tanh'] as const).map((act) => [N, F, act] as const)))('equals its twin at N=%i F=%i act=%s', async (N, F, act) => {
    const g = gateValues(N * F, N + F), u = rand(N * F, 2 * N + F, -2, 2);
    const hT = gpu.tensor('h', 'activations', rand(N * F, 99)); // garbage: every element must be written
    swigluForward(gpu, hT, gpu.tensor('g', 'activations', g), gpu.tensor('u', 'activations', u), N, F, act);
    const h = new Float32Array(N * F);
    swigluForwardRef(h, g, u, N, F, act);
    assertClose('h', await gpu.readF32(hT), h, TOL);
  });
});
