import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Gpu } from '../gpu/runtime.ts';
import { gpuForPath, REDUCTION_PATHS } from '../testing/gpu-paths.ts';
import { assertClose, finiteDifference, goldenArray, loadGolden, rand, randInts } from '../testing/compare.ts';
import { crossEntropy, crossEntropyChunkTokens } from './cross_entropy.ts';
import { crossEntropyRef } from './cross_entropy.ref.ts';

const LOSS_TOL = { atol: 1e-5, rtol: 1e-5 };
const GRAD_TOL = { atol: 1e-9, rtol: 1e-4 };

function validCount(targets: Int32Array): number {
  return targets.reduce((n, t) => n + (t === -100 ? 0 : 1), 0);
}

describe('cross_entropy twin', () => {
  const golden = loadGolden('cross_entropy');
  test.each(Object.keys(golden))('matches PyTorch (mean over unmasked targets) and autograd: %s', (name) => {
    const c = golden[name];
    const N = c.N as number, V = c.V as number;
    const targets = Int32Array.from(goldenArray(c.targets));
    const scale = 1 / validCount(targets);
    const loss = new Float32Array(N), d = goldenArray(c.logits);
    crossEntropyRef(loss, d, targets, N, V, scale);
    assertClose(`${name}.loss_rows`, loss, goldenArray(c.loss_rows), LOSS_TOL);
    assertClose(`${name}.loss`, [loss.reduce((a, b) => a + b, 0) * scale], [c.loss as number], LOSS_TOL);
    assertClose(`${name}.dlogits`, d, goldenArray(c.dlogits), GRAD_TOL);
  });

  test('chunks with the step-wide gradScale add up to the mean over the step', () => {
    const c = golden.v1000;
    const N = c.N as number, V = c.V as number;
    const targets = Int32Array.from(goldenArray(c.targets));
    const scale = 1 / validCount(targets);
    const logits = goldenArray(c.logits), loss = new Float32Array(N);
    for (const [t0, t1] of [[0, 1], [1, 3], [3, N]]) {
      crossEntropyRef(loss.subarray(t0, t1), logits.subarray(t0 * V, t1 * V), targets.subarray(t0, t1), t1 - t0, V, scale);
    }
    assertClose('loss', [loss.reduce((a, b) => a + b, 0) * scale], [c.loss as number], LOSS_TOL);
    assertClose('dlogits', logits, goldenArray(c.dlogits), GRAD_TOL);
  });

  test.each([0, 2])('matches finite differences (final-logit softcap %f)', (softcap) => {
    const Tc = 3, V = 7, targets = Int32Array.from([2, -100, 6]), scale = 1 / 2;
    const x = rand(Tc * V, 41, -3, 3);
    const cap = (v: number) => (softcap > 0 ? softcap * Math.tanh(v / softcap) : v);
    // L = scale * sum over unmasked rows of (lse - logit[target]), in float64.
    const lossFn = (xs: Float64Array) => {
      let L = 0;
      for (let t = 0; t < Tc; t++) {
        if (targets[t] === -100) continue;
        let s = 0;
        for (let v = 0; v < V; v++) s += Math.exp(cap(xs[t * V + v]));
        L += Math.log(s) - cap(xs[t * V + targets[t]]);
      }
      return L * scale;
    };
    const d = x.slice(), loss = new Float32Array(Tc);
    crossEntropyRef(loss, d, targets, Tc, V, scale, softcap);
    expect(finiteDifference(lossFn, Float64Array.from(x), d, [0, 2, 5, 7, 10, 14, 20])).toEqual([]);
  });

  test('chunk size: 220 tokens of a 151936 vocabulary fit 128 MiB', () => {
    const limits = { maxStorageBufferBindingSize: 128 << 20, maxBufferSize: 256 << 20 };
    expect(crossEntropyChunkTokens(151936, limits)).toBe(220);
    expect(crossEntropyChunkTokens(151936, limits, 64)).toBe(64);
    expect(crossEntropyChunkTokens(128256, { maxStorageBufferBindingSize: 2 ** 31 - 4, maxBufferSize: 1 << 30 })).toBe(2092);
    expect(() => crossEntropyChunkTokens(1000, { maxStorageBufferBindingSize: 256, maxBufferSize: 256 })).toThrow(RangeError);
  });
});

describe.each(REDUCTION_PATHS)('cross_entropy kernel (%s reduction)', (path) => {
  let gpu: Gpu;
  beforeAll(async () => {
    gpu = await gpuForPath(path);
  });
  afterAll(() => gpu?.destroy());

  // V ragged against the 256-thread workgroup; V=151936 (Qwen2.5) with a few rows proves the
  // big-vocabulary path; logits of scale 50 overflow exp without the max; -100 rows and one
  // invalid target (NaN loss, zero gradient) in the mix.
  test.each([
    [1, 1, 1, 'plain'],
    [3, 517, 3, 'plain'],
    [5, 1000, 50, 'plain'],
    [4, 300, 2, 'invalid-target'],
    [3, 151936, 4, 'plain'],
    [5, 1000, 50, 'softcap'], // Gemma 2's final-logit softcap 30 with logits past it
    [3, 517, 3, 'softcap'],
  ])('equals its twin at Tc=%i V=%i scale=%i (%s)', async (Tc, V, scale, kind) => {
    const softcap = kind === 'softcap' ? 30 : 0;
    const logits = rand(Tc * V, Tc + V, -scale, scale);
    const targets = Int32Array.from(randInts(Tc, V, 2 * Tc + V));
    if (Tc > 1) targets[1] = -100;
    if (kind === 'invalid-target') targets[3] = V;
    const gradScale = 1 / (validCount(targets) + 5); // as if the step had 5 more tokens elsewhere
    const lossT = gpu.tensor('loss', 'activations', rand(Tc, 5)); // garbage: every row must be written
    const logitsT = gpu.tensor('logits', 'scratch', logits);
    crossEntropy(gpu, lossT, logitsT, gpu.tensor('targets', 'activations', targets), Tc, V, gradScale, softcap);
    const loss = new Float32Array(Tc), d = logits.slice();
    crossEntropyRef(loss, d, targets, Tc, V, gradScale, softcap);
    const gotLoss = await gpu.readF32(lossT);
    assertClose('loss', gotLoss, loss, LOSS_TOL);
    if (kind === 'invalid-target') expect(Number.isNaN(gotLoss[3])).toBe(true);
    assertClose('dlogits', await gpu.readF32(logitsT), d, GRAD_TOL);
  });
});
