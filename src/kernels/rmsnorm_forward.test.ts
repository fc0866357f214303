import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Gpu } from '../gpu/runtime.ts';
import { gpuForPath, REDUCTION_PATHS } from '../testing/gpu-paths.ts';
import { assertClose, goldenArray, loadGolden, rand } from '../testing/compare.ts';
import { rmsnormForward, rmsnormForwardAdd } from './rmsnorm_forward.ts';
import { rmsnormForwardRef } from './rmsnorm_forward.ref.ts';

const TOL = { atol: 1e-6, rtol: 1e-5 };

describe('rmsnorm_forward twin', () => {
  const golden = loadGolden('rmsnorm');
  test.each(Object.keys(golden))('matches PyTorch: %s', (name) => {
    const c = golden[name];
    const N = c.N as number, C = c.C as number;
    const y = new Float32Array(N * C), rstd = new Float32Array(N);
    rmsnormForwardRef(y, rstd, goldenArray(c.x), goldenArray(c.w), N, C, c.eps as number);
    assertClose(`${name}.y`, y, goldenArray(c.y), TOL);
    assertClose(`${name}.rstd`, rstd, goldenArray(c.rstd), TOL);
  });
});

describe.each(REDUCTION_PATHS)('rmsnorm_forward kernel (%s reduction)', (path) => {
  let gpu: Gpu;
  beforeAll(async () => {
    gpu = await gpuForPath(path);
  });
  afterAll(() => gpu?.destroy());

  // Ragged C (not a multiple of the 128-thread workgroup), a single element, and more rows than
  // one grid dimension holds (65535), which exercises the 2-D workgroup grid.
  test.each([
    [1, 1],
    [4, 64],
    [7, 131],
    [3, 1000],
    [66_000, 3],
  ])('equals its twin at N=%i C=%i', async (N, C) => {
    const x = rand(N * C, N + C, -3, 3);
    const w = rand(C, 7 * C, 0.5, 1.5);
    const eps = 1e-6;
    const yT = gpu.tensor('y', 'activations', N * C * 4);
    const rT = gpu.tensor('rstd', 'activations', N * 4);
    rmsnormForward(gpu, yT, rT, gpu.tensor('x', 'activations', x), gpu.tensor('w', 'weights', w), N, C, eps);
    const y = new Float32Array(N * C), rstd = new Float32Array(N);
    rmsnormForwardRef(y, rstd, x, w, N, C, eps);
    assertClose('y', await gpu.readF32(yT), y, TOL);
    assertClose('rstd', await gpu.readF32(rT), rstd, TOL);
    expect(gpu.counters.dispatches).toBeGreaterThan(0);
  });

  // The `copy` entry: the same y and rstd, and x copied exactly (the residual sum's start).
  test.each([
    [1, 1],
    [7, 131],
    [66_000, 3],
  ])('with copyTo, equals its twin and copies x exactly at N=%i C=%i', async (N, C) => {
    const x = rand(N * C, N + C + 1, -3, 3);
    const w = rand(C, 7 * C + 1, 0.5, 1.5);
    const yT = gpu.tensor('y', 'activations', N * C * 4), rT = gpu.tensor('rstd', 'activations', N * 4);
    const cT = gpu.tensor('copy', 'activations', N * C * 4);
    rmsnormForward(gpu, yT, rT, gpu.tensor('x', 'activations', x), gpu.tensor('w', 'weights', w), N, C, 1e-5, cT);
    const y = new Float32Array(N * C), rstd = new Float32Array(N);
    rmsnormForwardRef(y, rstd, x, w, N, C, 1e-5);
    assertClose('y', await gpu.readF32(yT), y, TOL);
    assertClose('rstd', await gpu.readF32(rT), rstd, TOL);
    expect(Array.from(await gpu.readF32(cT))).toEqual(Array.from(x));
  });

  // The `add` entry: the normed row added into y (Gemma's sublayer-output norms into the residual).
  test.each([
    [1, 1],
    [7, 131],
    [66_000, 3],
  ])('rmsnormForwardAdd adds the normed rows into y, equal to its twin, at N=%i C=%i', async (N, C) => {
    const x = rand(N * C, N + C + 2, -3, 3);
    const w = rand(C, 7 * C + 2, 0.5, 1.5);
    const y0 = rand(N * C, N + C + 3, -2, 2);
    const yT = gpu.tensor('y', 'activations', y0), rT = gpu.tensor('rstd', 'activations', N * 4);
    rmsnormForwardAdd(gpu, yT, rT, gpu.tensor('x', 'activations', x), gpu.tensor('w', 'weights', w), N, C, 1e-5);
    const y = y0.slice(), rstd = new Float32Array(N);
    rmsnormForwardRef(y, rstd, x, w, N, C, 1e-5, true);
    assertClose('y', await gpu.readF32(yT), y, TOL);
    assertClose('rstd', await gpu.readF32(rT), rstd, TOL);
  });
});
