import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Gpu } from '../gpu/runtime.ts';
import { assertClose, finiteDifference, goldenArray, loadGolden, rand } from '../testing/compare.ts';
import { swigluBackward } from './swiglu_backward.ts';
import { swigluBackwardRef } from './swiglu_backward.ref.ts';

const TOL = { atol: 1e-6, rtol: 1e-5 };

describe('swiglu_backward twin', () => {
  const golden = loadGolden('swiglu');
  test.each(Object.keys(golden))('matches PyTorch autograd: %s', (name) => {
    const c = golden[name];
    const N = c.N as number, F = c.F as number;
    const dg = new Float32Array(N * F), du = new Float32Array(N * F);
    swigluBackwardRef(dg, du, goldenArray(c.dh), goldenArray(c.g), goldenArray(c.u), N, F, (c as Record<string, unknown>).act === 'gelu_tanh' ? 'gelu_tanh' : 'silu');
    assertClose(`${name}.dg`, dg, goldenArray(c.dg), TOL);
    assertClose(`${name}.du`, du, goldenArray(c.du), TOL);
  });

  test.each(['silu', 'gelu_tanh'] as const)('matches finite differences (%s)', (act) => {
    const N = 2, F = 7, n = N * F;
    const g = rand(n, 31, -6, 6), u = rand(n, 32), dh = rand(n, 33);
    // Variables are [g, u] concatenated; L = sum(act(g) * u * dh) in float64, each activation
    // written out from its definition.
    const f = (v: number) => act === 'silu' ? v / (1 + Math.exp(-v)) : 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
    const loss = (gu: Float64Array) => {
      let L = 0;
      for (let i = 0; i < n; i++) L += f(gu[i]) * gu[n + i] * dh[i];
      return L;
    };
    const dg = new Float32Array(n), du = new Float32Array(n);
    swigluBackwardRef(dg, du, dh, g, u, N, F, act);
    const gu = new Float64Array(2 * n);
    gu.set(g);
    gu.set(u, n);
    const analytic = new Float64Array(2 * n);
    analytic.set(dg);
    analytic.set(du, n);
    expect(finiteDifference(loss, gu, analytic, [0, 3, 6, 13, 14, 20, 27])).toEqual([]);
  });
});

describe('swiglu_backward kernel', () => {
  let gpu: Gpu;
  beforeAll(async () => {
    gpu = await Gpu.create();
  });
  afterAll(() => gpu?.destroy());

  test.each([
    [1, 1],
    [3, 131],
    [7, 300],
    [5, 1000],
  ].flatMap(([N, F]) => (['silu', 'gelu_tanh'] as const).map((act) => [N, F, act] as const)))('equals its twin at N=%i F=%i act=%s', async (N, F, act) => {
    const n = N * F;
    const g = rand(n, N + F, -8, 8), u = rand(n, 2 * N + F, -2, 2), dh = rand(n, 3 * N + F);
    for (const [k, v] of [[0, 100], [13, -100], [26, 1000], [39, -1000]]) if (k < n) g[k] = v;
    const dgT = gpu.tensor('dg', 'activations', rand(n, 98)), duT = gpu.tensor('du', 'activations', rand(n, 99));
    swigluBackward(
      gpu, dgT, duT, gpu.tensor('dh', 'activations', dh), gpu.tensor('g', 'activations', g),
      gpu.tensor('u', 'activations', u), N, F, act,
    );
    const dg = new Float32Array(n), du = new Float32Array(n);
    swigluBackwardRef(dg, du, dh, g, u, N, F, act);
    assertClose('dg', await gpu.readF32(dgT), dg, TOL);
    assertClose('du', await gpu.readF32(duT), du, TOL);
  });
});
