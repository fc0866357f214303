import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Gpu } from '../gpu/runtime.ts';
import { gpuForPath, REDUCTION_PATHS } from '../testing/gpu-paths.ts';
import { assertClose, goldenArray, loadGolden, rand } from '../testing/compare.ts';
import { gradNorm, gradNormPartials } from './grad_norm.ts';
import { gradNormRef } from './grad_norm.ref.ts';

const TOL = { atol: 1e-6, rtol: 2e-5 };

describe('grad_norm twin', () => {
  const golden = loadGolden('adamw');
  test.each(Object.keys(golden))('matches clip_grad_norm_ total norms: %s', (name) => {
    const c = golden[name];
    const gs = c.gradScale as number;
    for (let s = 1; s <= (c.steps as number); s++) {
      // torch's norm is of the scaled gradient (p.grad = grad * gradScale).
      const g = goldenArray(c[`grad_${s}`]).map((v) => v * gs);
      const norm = new Float32Array(2);
      gradNormRef(norm, g, g.length);
      assertClose(`${name}.norm_${s}`, [norm[1]], [c[`norm_${s}`] as number], TOL);
    }
  });
});

describe.each(REDUCTION_PATHS)('grad_norm kernel (%s reduction)', (path) => {
  let gpu: Gpu;
  beforeAll(async () => {
    gpu = await gpuForPath(path);
  });
  afterAll(() => gpu?.destroy());

  // One workgroup chunk is 256 * 16 = 4096 elements: a single element, ragged lengths over several
  // partials, and more partials (269) than the final workgroup has threads (256).
  test.each([1, 1000, 4096 * 3 + 17, 100_003, 1_100_000])('equals its twin at n=%i', async (n) => {
    const grad = rand(n, n, -1, 1);
    const normT = gpu.tensor('norm', 'optimizer', 8);
    const partials = gpu.tensor('partials', 'scratch', gradNormPartials(n) * 4);
    gradNorm(gpu, normT, partials, gpu.tensor('grad', 'lora', grad), n);
    const norm = new Float32Array(2);
    gradNormRef(norm, grad, n);
    assertClose('norm', await gpu.readF32(normT), norm, TOL);
  });

  test('reduces only the first n elements of a longer arena', async () => {
    const grad = rand(5000, 3), n = 4321;
    grad.fill(1e3, n);
    const normT = gpu.tensor('norm', 'optimizer', 8);
    gradNorm(gpu, normT, gpu.tensor('partials', 'scratch', gradNormPartials(n) * 4), gpu.tensor('grad', 'lora', grad), n);
    const norm = new Float32Array(2);
    gradNormRef(norm, grad, n);
    assertClose('norm', await gpu.readF32(normT), norm, TOL);
    expect(gradNormPartials(n)).toBe(2);
  });
});
