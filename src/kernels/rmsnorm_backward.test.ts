import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Gpu } from '../gpu/runtime.ts';
import { gpuForPath, REDUCTION_PATHS } from '../testing/gpu-paths.ts';
import { assertClose, finiteDifference, goldenArray, loadGolden, rand } from '../testing/compare.ts';
import { rmsnormBackward } from './rmsnorm_backward.ts';
import { rmsnormBackwardRef } from './rmsnorm_backward.ref.ts';

const TOL = { atol: 1e-5, rtol: 1e-4 };

describe('rmsnorm_backward twin', () => {
  const golden = loadGolden('rmsnorm');
  test.each(Object.keys(golden))('matches PyTorch autograd: %s', (name) => {
    const c = golden[name];
    const N = c.N as number, C = c.C as number;
    const dx = new Float32Array(N * C);
    rmsnormBackwardRef(dx, goldenArray(c.dy), goldenArray(c.x), goldenArray(c.w), goldenArray(c.rstd), N, C);
    assertClose(`${name}.dx`, dx, goldenArray(c.dx), TOL);
  });

  test('matches finite differences', () => {
    const N = 2, C = 9, eps = 1e-5;
    const x = rand(N * C, 1), w = rand(C, 2, 0.5, 1.5), dy = rand(N * C, 3);
    // L(x) = sum(rmsnorm(x) * dy), in float64.
    const loss = (xs: Float64Array) => {
      let L = 0;
      for (let n = 0; n < N; n++) {
        let ss = 0;
        for (let c = 0; c < C; c++) ss += xs[n * C + c] ** 2;
        const r = 1 / Math.sqrt(ss / C + eps);
        for (let c = 0; c < C; c++) L += w[c] * xs[n * C + c] * r * dy[n * C + c];
      }
      return L;
    };
    const rstd = new Float32Array(N);
    for (let n = 0; n < N; n++) {
      let ss = 0;
      for (let c = 0; c < C; c++) ss += x[n * C + c] ** 2;
      rstd[n] = 1 / Math.sqrt(ss / C + eps);
    }
    const dx = new Float32Array(N * C);
    rmsnormBackwardRef(dx, dy, x, w, rstd, N, C);
    expect(finiteDifference(loss, Float64Array.from(x), dx, [0, 4, 8, 9, 17])).toEqual([]);
  });
});

describe.each(REDUCTION_PATHS)('rmsnorm_backward kernel (%s reduction)', (path) => {
  let gpu: Gpu;
  beforeAll(async () => {
    gpu = await gpuForPath(path);
  });
  afterAll(() => gpu?.destroy());

  test.each([
    [1, 1, false],
    [4, 64, false],
    [7, 131, true],
    [3, 1000, true],
  ])('equals its twin at N=%i C=%i accumulate=%s', async (N, C, accumulate) => {
    const x = rand(N * C, 11, -2, 2), w = rand(C, 12, 0.5, 1.5), dy = rand(N * C, 13);
    const rstd = rand(N, 14, 0.5, 2);
    const dx0 = rand(N * C, 15);
    const dxT = gpu.tensor('dx', 'activations', dx0);
    rmsnormBackward(
      gpu, dxT, gpu.tensor('dy', 'activations', dy), gpu.tensor('x', 'activations', x),
      gpu.tensor('w', 'weights', w), gpu.tensor('rstd', 'activations', rstd), N, C, accumulate,
    );
    const dx = dx0.slice();
    rmsnormBackwardRef(dx, dy, x, w, rstd, N, C, accumulate);
    assertClose('dx', await gpu.readF32(dxT), dx, TOL);
  });
});
