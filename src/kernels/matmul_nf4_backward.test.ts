import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { COUNTING_LIMITS, countingGpu } from '../gpu/counting.ts';
import { Gpu } from '../gpu/runtime.ts';
import { assertClose, finiteDifference, goldenArray, loadGolden, rand, type GoldenTensor } from '../testing/compare.ts';
import { recordDispatches } from '../testing/dispatches.ts';
import { dequantizeNF4, dqAbsmax, doubleQuantWords, packWords, quantizeNF4 } from '../quant/nf4.ts';
import { matmulNf4Backward, matmulNf4BackwardGlu, matmulNf4BackwardGroup, nf4BackwardFits } from './matmul_nf4_backward.ts';
import type { NF4KStep } from './matmul_nf4.ts';
import { matmulNf4BackwardGluRef, matmulNf4BackwardGroupRef, matmulNf4BackwardRef } from './matmul_nf4_backward.ref.ts';
import { swigluBackward } from './swiglu_backward.ts';

const TOL = { atol: 1e-5, rtol: 1e-4 };
const golden = loadGolden('nf4');
const bytes = (t: GoldenTensor | number) => Uint8Array.from((t as GoldenTensor).data);

describe('matmul_nf4_backward twin', () => {
  test.each(['mm_small', 'mm_ragged'])('matches PyTorch autograd of linear(X, dequantize_4bit(W)): %s', (name) => {
    const c = golden[name];
    const M = c.M as number, N = c.N as number, K = c.K as number;
    const dx = new Float32Array(M * K);
    matmulNf4BackwardRef(dx, goldenArray(c.dy), packWords(bytes(c.packed), N * K), goldenArray(c.absmax), M, N, K);
    assertClose(`${name}.dx`, dx, goldenArray(c.dx), TOL);
  });

  test('matches finite differences', () => {
    // L(X) = sum(X · dequant(W)ᵀ ⊙ G) in float64; dL/dX = G · dequant(W) is what the twin computes.
    const M = 3, N = 5, K = 70;
    const { packed, absmax } = quantizeNF4(rand(N * K, 21, -0.5, 0.5));
    const W = dequantizeNF4(packed, absmax, N * K);
    const X = rand(M * K, 22), G = rand(M * N, 23);
    const loss = (xs: Float64Array) => {
      let L = 0;
      for (let m = 0; m < M; m++) {
        for (let n = 0; n < N; n++) {
          let y = 0;
          for (let k = 0; k < K; k++) y += xs[m * K + k] * W[n * K + k];
          L += y * G[m * N + n];
        }
      }
      return L;
    };
    const dx = new Float32Array(M * K);
    matmulNf4BackwardRef(dx, G, packWords(packed, N * K), absmax, M, N, K);
    expect(finiteDifference(loss, Float64Array.from(X), dx, [0, 1, 63, 64, 69, 70, 150, 209])).toEqual([]);
  });
});

describe('matmul_nf4_backward N step', () => {
  // Two 64×32 staged tiles (17.1 KiB) need more than the portable 16 KiB of workgroup memory.
  test.each([
    [16384, 16],
    [32768, 32],
  ])('with %i bytes of workgroup memory main and group take N step %i', (mem, step) => {
    const { gpu } = countingGpu({ ...COUNTING_LIMITS, maxComputeWorkgroupStorageSize: mem });
    const seen = recordDispatches(gpu);
    const t = (n: number) => gpu.tensor('t', 'scratch', n * 4);
    const part = () => ({ dY: t(128 * 64), Wq: t(64 * 8), absmax: t(64), N: 64 });
    matmulNf4Backward(gpu, t(128 * 64), t(128 * 64), t(64 * 8), t(64), 128, 64, 64);
    matmulNf4BackwardGroup(gpu, t(128 * 64), [part(), part()], 128, 64);
    expect(seen).toHaveLength(2);
    for (const { key } of seen) expect(key).toContain(`"TN":${step}`);
  });
});

describe('matmul_nf4_backward kernel', () => {
  let gpu: Gpu;
  beforeAll(async () => {
    gpu = await Gpu.create();
  });
  afterAll(() => gpu?.destroy());

  test.each([
    [1, 1, 1, false, 64],
    [5, 7, 100, true, 64],
    [3, 65, 67, false, 64],
    [70, 130, 200, true, 64],
    [64, 32, 128, false, 64],
    [17, 33, 50, true, 32],
  ])('equals its twin at M=%i N=%i K=%i accumulate=%s blocksize=%i', async (M, N, K, accumulate, blocksize) => {
    const { packed, absmax } = quantizeNF4(rand(N * K, N * K + 7, -0.2, 0.2), blocksize);
    const Wq = packWords(packed, N * K);
    const dY = rand(M * N, M * N, -1, 1);
    const dx0 = rand(M * K, M * K + 3, -1, 1);
    const dyT = gpu.tensor('dy', 'activations', dY), wT = gpu.tensor('wq', 'weights', Wq), aT = gpu.tensor('absmax', 'weights', absmax);
    const dx = dx0.slice();
    matmulNf4BackwardRef(dx, dY, Wq, absmax, M, N, K, { accumulate, blocksize });
    // Both N steps: each against the twin, and the two bit for bit (same products, same n order).
    const got: Float32Array[] = [];
    for (const nStep of [16, 32] as NF4KStep[]) {
      const dxT = gpu.tensor(`dx.n${nStep}`, 'activations', dx0);
      matmulNf4Backward(gpu, dxT, dyT, wT, aT, M, N, K, { accumulate, blocksize, nStep });
      got.push(await gpu.readF32(dxT));
      assertClose(`dx.n${nStep}`, got.at(-1)!, dx, TOL);
    }
    expect(got[1]).toEqual(got[0]);
  });

  // DQ: against the twin, and bit for bit against the kernel fed the decoded f32 absmax.
  test.each([
    [5, 7, 100, true, 64, 16],
    [70, 130, 200, false, 64, 32],
    [17, 33, 50, true, 32, 32],
    [66, 40, 70, false, 128, 16],
  ])('double-quantized absmax at M=%i N=%i K=%i accumulate=%s blocksize=%i N step %i', async (M, N, K, accumulate, blocksize, n) => {
    const nStep = n as NF4KStep;
    const { packed, absmax } = quantizeNF4(rand(N * K, N * K + 9, -0.2, 0.2), blocksize);
    const Wq = packWords(packed, N * K), dq = doubleQuantWords(absmax);
    const dY = rand(M * N, M * N, -1, 1);
    const dx0 = rand(M * K, M * K + 3, -1, 1);
    const dxT = gpu.tensor('dx', 'activations', dx0), dxPlain = gpu.tensor('dx.plain', 'activations', dx0);
    const dyT = gpu.tensor('dy', 'activations', dY), wT = gpu.tensor('wq', 'weights', Wq);
    matmulNf4Backward(gpu, dxT, dyT, wT, gpu.tensor('absmax.dq', 'weights', dq), M, N, K, { accumulate, blocksize, doubleQuant: true, nStep });
    const f32Absmax = gpu.tensor('absmax', 'weights', dqAbsmax(dq, Math.ceil((N * K) / blocksize)));
    matmulNf4Backward(gpu, dxPlain, dyT, wT, f32Absmax, M, N, K, { accumulate, blocksize, nStep });
    const dx = dx0.slice();
    matmulNf4BackwardRef(dx, dY, Wq, dq, M, N, K, { accumulate, blocksize, doubleQuant: true });
    const got = await gpu.readF32(dxT);
    assertClose('dx', got, dx, TOL);
    expect(got).toEqual(await gpu.readF32(dxPlain));
  });

  // The bounds-free forms (whole tiles) against the checked ones at both N steps: same products, same
  // order, same bits. N % 32 == 16 fits only the 16-step form: the 32-step kernel then runs checked.
  test.each([
    [64, 16, 64, false, false],
    [128, 48, 192, true, true],
    [64, 32, 128, true, false],
    [128, 96, 64, false, true],
  ])('the bounds-free forms equal the checked forms bit for bit at M=%i N=%i K=%i accumulate=%s dq=%s', async (M, N, K, accumulate, doubleQuant) => {
    expect(nf4BackwardFits(M, K, [N], 16)).toBe(true);
    expect(nf4BackwardFits(M, K, [N], 32)).toBe(N % 32 === 0);
    const { packed, absmax } = quantizeNF4(rand(N * K, N * K + 11, -0.2, 0.2), 64);
    const Wq = packWords(packed, N * K), a = doubleQuant ? doubleQuantWords(absmax) : absmax;
    const dY = rand(M * N, M * N + 1, -1, 1), dx0 = rand(M * K, M * K + 4, -1, 1);
    const dyT = gpu.tensor('dy', 'activations', dY), wT = gpu.tensor('wq', 'weights', Wq), aT = gpu.tensor('absmax', 'weights', a);
    const dx = dx0.slice();
    matmulNf4BackwardRef(dx, dY, Wq, a, M, N, K, { accumulate, doubleQuant });
    const forms: [string, Float32Array][] = [];
    for (const nStep of [16, 32] as NF4KStep[]) {
      for (const fit of [true, false]) {
        const t = gpu.tensor(`dx.n${nStep}.${fit ? 'fit' : 'checked'}`, 'activations', dx0);
        matmulNf4Backward(gpu, t, dyT, wT, aT, M, N, K, { accumulate, doubleQuant, nStep, fit });
        forms.push([t.label, await gpu.readF32(t)]);
      }
    }
    assertClose('dx', forms[0][1], dx, TOL);
    for (const [label, got] of forms.slice(1)) expect(got, label).toEqual(forms[0][1]);
  });

  test('reproduces the PyTorch autograd golden end to end', async () => {
    for (const name of ['mm_small', 'mm_ragged']) {
      const c = golden[name];
      const M = c.M as number, N = c.N as number, K = c.K as number;
      const dxT = gpu.tensor('dx', 'activations', M * K * 4);
      matmulNf4Backward(
        gpu, dxT, gpu.tensor('dy', 'activations', goldenArray(c.dy)), gpu.tensor('wq', 'weights', packWords(bytes(c.packed), N * K)),
        gpu.tensor('absmax', 'weights', goldenArray(c.absmax)), M, N, K,
      );
      assertClose(`${name}.dx`, await gpu.readF32(dxT), goldenArray(c.dx), TOL);
    }
  });
});

describe('matmul_nf4_backward group', () => {
  let gpu: Gpu;
  beforeAll(async () => {
    gpu = await Gpu.create();
  });
  afterAll(() => gpu?.destroy());

  const linear = (N: number, K: number, blocksize: number, seed: number, dq: boolean) => {
    const { packed, absmax } = quantizeNF4(rand(N * K, seed + N * K, -0.2, 0.2), blocksize);
    return { Wq: packWords(packed, N * K), absmax: dq ? doubleQuantWords(absmax) : absmax };
  };

  // M ragged against the 64-row tile, N_j ragged against the 16- and 32-deep steps (one under a step, one
  // over several), K ragged against the 64-wide tile with odd K (blocks cross rows), two and three
  // parts, accumulate on and off, blocksizes 32 and 128, double-quantized absmax. The group runs at
  // one N step and the per-part kernels at the other: bit-equal across steps too.
  test.each([
    [5, [17, 5, 9], 67, false, 64, false, 16],
    [5, [17, 5, 9], 67, false, 64, false, 32],
    [70, [130, 33, 33], 40, true, 64, true, 32],
    [3, [16, 65], 100, true, 32, false, 16],
    [129, [9, 70, 1], 96, false, 64, true, 32],
    [66, [40, 72], 70, true, 128, true, 16],
    [64, [32, 16, 48], 128, true, 64, false, 16],   // whole tiles: bounds-free at step 16, checked at 32
    [64, [32, 64, 96], 128, false, 64, false, 32],  // whole tiles: bounds-free at both steps
  ] as const)('M=%i N=%j K=%i accumulate=%s blocksize=%i dq=%s N step %i: twin, and bit for bit one matmul_nf4_backward per part', async (M, Ns, K, accumulate, blocksize, dq, nStep) => {
    const w = Ns.map((N, j) => linear(N, K, blocksize, j, dq));
    const dYs = Ns.map((N, j) => rand(M * N, 40 + j, -1, 1));
    const dx0 = rand(M * K, M * K + 3, -1, 1);
    const dxT = gpu.tensor('dx', 'activations', dx0), dxPlain = gpu.tensor('dx.plain', 'activations', dx0);
    const parts = Ns.map((N, j) => ({
      dY: gpu.tensor(`dy${j}`, 'activations', dYs[j]), Wq: gpu.tensor(`w${j}`, 'weights', w[j].Wq), absmax: gpu.tensor(`a${j}`, 'weights', w[j].absmax), N,
    }));
    const opts = { accumulate, blocksize, doubleQuant: dq };
    const other = (48 - nStep) as NF4KStep;
    matmulNf4BackwardGroup(gpu, dxT, parts, M, K, { ...opts, nStep });
    parts.forEach((q, j) => matmulNf4Backward(gpu, dxPlain, q.dY, q.Wq, q.absmax, M, q.N, K, { ...opts, accumulate: j > 0 || accumulate, nStep: other }));
    const dx = dx0.slice();
    matmulNf4BackwardGroupRef(dx, Ns.map((N, j) => ({ dY: dYs[j], ...w[j], N })), M, K, opts);
    const got = await gpu.readF32(dxT);
    assertClose('dx', got, dx, TOL);
    expect(got).toEqual(await gpu.readF32(dxPlain));
  });

  test.each([
    [5, 13, 67, false, 64, false, 'silu', 16],
    [70, 70, 40, true, 64, true, 'silu', 32],
    [66, 9, 96, false, 32, false, 'gelu_tanh', 32],
    [3, 33, 65, true, 64, true, 'gelu_tanh', 16],
    [128, 64, 128, true, 64, false, 'silu', 32],   // whole tiles: bounds-free at both steps
  ] as const)('GLU prologue at M=%i F=%i K=%i accumulate=%s blocksize=%i dq=%s %s N step %i: twin, and bit for bit swiglu_backward + two matmul_nf4_backward', async (M, F, K, accumulate, blocksize, dq, act, nStep) => {
    const up = linear(F, K, blocksize, 1, dq), gate = linear(F, K, blocksize, 2, dq);
    const dm = rand(M * F, 50, -1, 1), g = rand(M * F, 51, -4, 4), u = rand(M * F, 52, -2, 2);
    const dx0 = rand(M * K, M * K + 5, -1, 1);
    const dxT = gpu.tensor('dx', 'activations', dx0), dxPlain = gpu.tensor('dx.plain', 'activations', dx0);
    const [dmT, gT, uT] = [dm, g, u].map((a, i) => gpu.tensor(`in${i}`, 'activations', a));
    const upT = { Wq: gpu.tensor('wu', 'weights', up.Wq), absmax: gpu.tensor('au', 'weights', up.absmax) };
    const gateT = { Wq: gpu.tensor('wg', 'weights', gate.Wq), absmax: gpu.tensor('ag', 'weights', gate.absmax) };
    const opts = { accumulate, blocksize, doubleQuant: dq };
    const other = (48 - nStep) as NF4KStep;
    matmulNf4BackwardGlu(gpu, dxT, dmT, gT, uT, upT, gateT, M, F, K, { ...opts, act, nStep });
    const dgT = gpu.tensor('dg', 'activations', M * F * 4), duT = gpu.tensor('du', 'activations', M * F * 4);
    swigluBackward(gpu, dgT, duT, dmT, gT, uT, M, F, act);
    matmulNf4Backward(gpu, dxPlain, duT, upT.Wq, upT.absmax, M, F, K, { ...opts, nStep: other });
    matmulNf4Backward(gpu, dxPlain, dgT, gateT.Wq, gateT.absmax, M, F, K, { ...opts, accumulate: true, nStep: other });
    const dx = dx0.slice();
    matmulNf4BackwardGluRef(dx, dm, g, u, up, gate, M, F, K, { ...opts, act });
    const got = await gpu.readF32(dxT);
    assertClose('dx', got, dx, TOL);
    expect(got).toEqual(await gpu.readF32(dxPlain));
  });

  test('dX must not be read by the dispatch; 2 or 3 parts', () => {
    const t = gpu.tensor('t', 'activations', 64), w = gpu.tensor('w', 'weights', 64);
    const part = { dY: gpu.tensor('dy', 'activations', 64), Wq: w, absmax: w, N: 1 };
    expect(() => matmulNf4BackwardGroup(gpu, t, [part, { ...part, dY: t }], 1, 1)).toThrow(/shares a buffer with an input/);
    expect(() => matmulNf4BackwardGroup(gpu, t, [part], 1, 1)).toThrow(/2 or 3/);
  });
});
