import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Gpu } from '../gpu/runtime.ts';
import { assertClose, goldenArray, loadGolden, rand } from '../testing/compare.ts';
import { adamw, type AdamWConfig } from './adamw.ts';
import { adamwRef } from './adamw.ref.ts';
import { gradNorm, gradNormPartials } from './grad_norm.ts';
import { gradNormRef } from './grad_norm.ref.ts';

const TOL = { atol: 1e-6, rtol: 1e-5 };

function normOf(grad: Float32Array): number {
  const norm = new Float32Array(2);
  gradNormRef(norm, grad, grad.length);
  return norm[1];
}

describe('adamw twin', () => {
  const golden = loadGolden('adamw');
  test.each(Object.keys(golden))('matches torch.optim.AdamW + clip_grad_norm_ for 5 steps: %s', (name) => {
    const c = golden[name];
    const param = goldenArray(c.param_0), n = param.length;
    const m = new Float32Array(n), v = new Float32Array(n);
    for (let s = 1; s <= (c.steps as number); s++) {
      const cfg: AdamWConfig = {
        lr: c.lr as number, beta1: c.beta1 as number, beta2: c.beta2 as number, eps: c.eps as number,
        weightDecay: c.weightDecay as number, step: s, maxGradNorm: c.maxGradNorm as number, gradScale: c.gradScale as number,
      };
      const grad = goldenArray(c[`grad_${s}`]);
      adamwRef(param, m, v, grad, normOf(grad), n, cfg);
      assertClose(`${name}.m_${s}`, m, goldenArray(c[`m_${s}`]), TOL);
      assertClose(`${name}.v_${s}`, v, goldenArray(c[`v_${s}`]), TOL);
      assertClose(`${name}.param_${s}`, param, goldenArray(c[`param_${s}`]), TOL);
    }
  });

  test('clipping engages only above maxGradNorm', () => {
    const grad = rand(100, 5), norm = normOf(grad);
    const cfg = { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, step: 1 };
    const mOf = (maxGradNorm: number) => {
      const p = new Float32Array(100), m = new Float32Array(100), v = new Float32Array(100);
      adamwRef(p, m, v, grad, norm, 100, { ...cfg, maxGradNorm });
      return m;
    };
    // m after one step is (1 - beta1) * clipped g: unclipped for max 0 and max > norm.
    expect(mOf(norm * 2)[7]).toBeCloseTo(0.1 * grad[7], 7);
    expect(mOf(0)[7]).toBeCloseTo(0.1 * grad[7], 7);
    expect(mOf(norm / 4)[7]).toBeCloseTo((0.1 * grad[7] * (norm / 4)) / (norm + 1e-6), 7);
  });
});

describe('adamw kernel', () => {
  let gpu: Gpu;
  beforeAll(async () => {
    gpu = await Gpu.create();
  });
  afterAll(() => gpu?.destroy());

  // Ragged lengths (not multiples of the 256-thread workgroup); clipping active, inactive, off, and a
  // gradient scale. Five steps each with grad_norm feeding adamw on the GPU, no readback in between.
  test.each([
    [1, 1.0, 1, 1e-8],
    [1000, 1.0, 1, 1e-8],
    [70_001, 1e4, 1, 1e-8],
    [5003, 0, 1, 1e-8],
    [4099, 0.5, 0.25, 1e-8],
    [777, 0, 0.01, 1e-2],
  ])('5 steps equal the twin at n=%i maxGradNorm=%s gradScale=%s eps=%s', async (n, maxGradNorm, gradScale, eps) => {
    const param0 = rand(n, n + 1);
    const paramT = gpu.tensor('param', 'lora', param0);
    const mT = gpu.tensor('m', 'optimizer', n * 4), vT = gpu.tensor('v', 'optimizer', n * 4);
    const gradT = gpu.tensor('grad', 'lora', n * 4), normT = gpu.tensor('norm', 'optimizer', 8);
    const partials = gpu.tensor('partials', 'scratch', gradNormPartials(n) * 4);
    const param = param0.slice(), m = new Float32Array(n), v = new Float32Array(n);
    const readbacks = gpu.counters.readbacks;
    for (let step = 1; step <= 5; step++) {
      const cfg: AdamWConfig = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps, weightDecay: 0.1, step, maxGradNorm, gradScale };
      const grad = rand(n, 100 * step + n, -2, 2);
      gpu.upload(gradT, grad);
      gradNorm(gpu, normT, partials, gradT, n);
      adamw(gpu, { param: paramT, grad: gradT, m: mT, v: vT, norm: normT }, cfg);
      adamwRef(param, m, v, grad, normOf(grad), n, cfg);
    }
    expect(gpu.counters.readbacks).toBe(readbacks);
    assertClose('m', await gpu.readF32(mT), m, TOL);
    assertClose('v', await gpu.readF32(vT), v, TOL);
    assertClose('param', await gpu.readF32(paramT), param, TOL);
  });
});
