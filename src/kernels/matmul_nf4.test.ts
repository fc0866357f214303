import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Gpu } from '../gpu/runtime.ts';
import { assertClose, goldenArray, loadGolden, rand, type GoldenTensor } from '../testing/compare.ts';
import { recordDispatches } from '../testing/dispatches.ts';
import { dqAbsmax, doubleQuantWords, packWords, quantizeNF4 } from '../quant/nf4.ts';
import { COUNTING_LIMITS, countingGpu } from '../gpu/counting.ts';
import { matmulNf4, matmulNf4Tiled, nf4KStep, nf4TilesFit, type NF4KStep } from './matmul_nf4.ts';
import { matmulNf4Ref } from './matmul_nf4.ref.ts';
import { matmulNf4GateUp } from './matmul_nf4_fused.ts';
import { matmulNf4BackwardGroup } from './matmul_nf4_backward.ts';

const TOL = { atol: 1e-5, rtol: 1e-4 };
const golden = loadGolden('nf4');
const bytes = (t: GoldenTensor | number) => Uint8Array.from((t as GoldenTensor).data);

describe('matmul_nf4 twin', () => {
  test.each(['mm_small', 'mm_ragged'])('matches torch linear(X, dequantize_4bit(W), b): %s', (name) => {
    const c = golden[name];
    const M = c.M as number, N = c.N as number, K = c.K as number;
    const y = new Float32Array(M * N);
    matmulNf4Ref(y, goldenArray(c.x), packWords(bytes(c.packed), N * K), goldenArray(c.absmax), goldenArray(c.bias), M, N, K);
    assertClose(`${name}.y`, y, goldenArray(c.y), TOL);
  });
});

describe('matmul_nf4 K step', () => {
  // Two 64×32 f32 tiles plus the tables (17.1 KiB) exceed the portable 16 KiB: such a device keeps
  // the 16-step form. The counting device records the pipeline's overrides in the kernel key.
  test.each([
    [16384, 16],
    [32768, 32],
  ])('with %i bytes of workgroup memory the kernel takes K step %i', (mem, step) => {
    const { gpu } = countingGpu({ ...COUNTING_LIMITS, maxComputeWorkgroupStorageSize: mem });
    const seen = recordDispatches(gpu);
    const t = (n: number) => gpu.tensor('t', 'scratch', n * 4);
    matmulNf4(gpu, t(128 * 64), t(128 * 64), t(64 * 8), t(64), undefined, 128, 64, 64);
    expect(seen).toHaveLength(1);
    expect(seen[0].key).toContain(`"TK":${step}`);
    expect(nf4KStep(gpu, 2, 'matmul_nf4')).toBe(step);
    if (step === 16) expect(() => nf4KStep(gpu, 2, 'matmul_nf4', 32)).toThrow(/K step 32 needs 17472 bytes/);
  });
});

describe('matmul_nf4 kernel', () => {
  let gpu: Gpu;
  beforeAll(async () => {
    gpu = await Gpu.create();
  });
  afterAll(() => gpu?.destroy());

  // Ragged in every dimension against the 64×64 tile and both K steps (16, 32); K % 64 != 0 makes NF4
  // blocks cross weight rows; K % 4 != 0 starts rows inside a code-word half. Plus aligned shapes
  // (the bounds-free form), a single element, and non-default blocksizes.
  test.each([
    [1, 1, 1, false, false, 64],
    [128, 64, 48, true, true, 32],
    [6, 65, 36, false, false, 64],
    [5, 7, 100, false, true, 64],
    [3, 65, 67, true, true, 64],
    [70, 130, 200, true, false, 64],
    [64, 64, 128, false, false, 64],
    [17, 33, 50, true, true, 32],
    [9, 70, 300, false, true, 128],
  ])('equals its twin at M=%i N=%i K=%i accumulate=%s bias=%s blocksize=%i', async (M, N, K, accumulate, hasBias, blocksize) => {
    const W = rand(N * K, N * K, -0.2, 0.2);
    const { packed, absmax } = quantizeNF4(W, blocksize);
    const Wq = packWords(packed, N * K);
    const X = rand(M * K, M + K, -1, 1);
    const bias = hasBias ? rand(N, 3 * N, -1, 1) : undefined;
    const y0 = rand(M * N, M * N + 1, -1, 1);
    const xT = gpu.tensor('x', 'activations', X), wT = gpu.tensor('wq', 'weights', Wq), aT = gpu.tensor('absmax', 'weights', absmax);
    const bT = bias && gpu.tensor('bias', 'weights', bias);
    const y = y0.slice();
    matmulNf4Ref(y, X, Wq, absmax, bias, M, N, K, { accumulate, blocksize });
    // Both K steps (the matrix-vector route for M <= 4 ignores the step): each against the twin, and
    // the two bit for bit (same products, same k order).
    const got: Float32Array[] = [];
    for (const kStep of [16, 32] as NF4KStep[]) {
      const yT = gpu.tensor(`y.k${kStep}`, 'activations', y0);
      matmulNf4(gpu, yT, xT, wT, aT, bT, M, N, K, { accumulate, blocksize, kStep });
      got.push(await gpu.readF32(yT));
      assertClose(`y.k${kStep}`, got.at(-1)!, y, TOL);
    }
    expect(got[1]).toEqual(got[0]);
  });

  // DQ on ragged shapes (blocks crossing rows, runs of 256 blocks crossing tiles): against the twin,
  // and bit for bit against the same kernel fed the decoded f32 absmax (same scales, same order).
  test.each([
    [5, 7, 100, false, true, 64, 16],
    [70, 130, 200, true, false, 64, 16],
    [70, 130, 200, true, false, 64, 32],
    [17, 33, 50, true, true, 32, 32],
    [66, 65, 84, false, true, 128, 32],
  ])('double-quantized absmax at M=%i N=%i K=%i accumulate=%s bias=%s blocksize=%i K step %i', async (M, N, K, accumulate, hasBias, blocksize, kStep) => {
    const { packed, absmax } = quantizeNF4(rand(N * K, N * K + 2, -0.2, 0.2), blocksize);
    const Wq = packWords(packed, N * K), dq = doubleQuantWords(absmax);
    const X = rand(M * K, M + K, -1, 1);
    const bias = hasBias ? rand(N, 3 * N, -1, 1) : undefined;
    const y0 = rand(M * N, M * N + 1, -1, 1);
    const yT = gpu.tensor('y', 'activations', y0), yPlain = gpu.tensor('y.plain', 'activations', y0);
    const xT = gpu.tensor('x', 'activations', X), wT = gpu.tensor('wq', 'weights', Wq), bT = bias && gpu.tensor('bias', 'weights', bias);
    const step = { kStep: kStep as NF4KStep };
    matmulNf4(gpu, yT, xT, wT, gpu.tensor('absmax.dq', 'weights', dq), bT, M, N, K, { accumulate, blocksize, doubleQuant: true, ...step });
    const f32Absmax = gpu.tensor('absmax', 'weights', dqAbsmax(dq, Math.ceil((N * K) / blocksize)));
    matmulNf4(gpu, yPlain, xT, wT, f32Absmax, bT, M, N, K, { accumulate, blocksize, ...step });
    const y = y0.slice();
    matmulNf4Ref(y, X, Wq, dq, bias, M, N, K, { accumulate, blocksize, doubleQuant: true });
    const got = await gpu.readF32(yT);
    assertClose('y', got, y, TOL);
    expect(got).toEqual(await gpu.readF32(yPlain));
  });

  // The bounds-free forms (whole tiles) against the checked ones on the same shapes, at both K steps:
  // same products in the same order, so the same bits. K % 32 == 16 fits only the 16-step form, so
  // there the 32-step kernel runs checked (a last half-empty step). K % 64 == 16 makes NF4 blocks
  // cross rows inside a K step.
  test.each([
    [64, 64, 16, false, false],
    [128, 192, 80, true, true],
    [64, 128, 144, false, true],
    [128, 64, 96, true, false],
    [64, 128, 64, false, true],
  ])('the bounds-free forms equal the checked forms bit for bit at M=%i N=%i K=%i accumulate=%s dq=%s', async (M, N, K, accumulate, doubleQuant) => {
    expect(nf4TilesFit(M, N, K, 16)).toBe(true);
    expect(nf4TilesFit(M, N, K, 32)).toBe(K % 32 === 0);
    const { packed, absmax } = quantizeNF4(rand(N * K, N * K + 5, -0.2, 0.2), 64);
    const Wq = packWords(packed, N * K);
    const X = rand(M * K, M + K + 1, -1, 1), bias = rand(N, N + 1, -1, 1);
    const y0 = rand(M * N, M * N + 2, -1, 1);
    const xT = gpu.tensor('x', 'activations', X), wT = gpu.tensor('wq', 'weights', Wq), bT = gpu.tensor('bias', 'weights', bias);
    const aT = gpu.tensor('absmax', 'weights', doubleQuant ? doubleQuantWords(absmax) : absmax);
    const y = y0.slice();
    matmulNf4Ref(y, X, Wq, doubleQuant ? doubleQuantWords(absmax) : absmax, bias, M, N, K, { accumulate, doubleQuant });
    const forms: [string, Float32Array][] = [];
    for (const kStep of [16, 32] as NF4KStep[]) {
      for (const fit of [true, false]) {
        const yT = gpu.tensor(`y.k${kStep}.${fit ? 'fit' : 'checked'}`, 'activations', y0);
        matmulNf4Tiled(gpu, yT, xT, wT, aT, bT, M, N, K, { accumulate, doubleQuant, kStep, fit });
        forms.push([yT.label, await gpu.readF32(yT)]);
      }
    }
    assertClose('y', forms[0][1], y, TOL);
    for (const [label, got] of forms.slice(1)) expect(got, label).toEqual(forms[0][1]);
  });

  // A device held to the portable 16 KiB of workgroup memory (Dawn enforces it at pipeline creation):
  // matmul_nf4, the fused gate/up and the grouped backward (all sharing nf4KStep) compile there at
  // K step 16, DQ map included, and give the same bits as this device's default step.
  test('on a 16 KiB device the tiled NF4 kernels take K step 16 and give the same bits', async () => {
    const small = await Gpu.create({ limitCaps: { maxComputeWorkgroupStorageSize: 16384 } });
    try {
      expect(small.limits.maxComputeWorkgroupStorageSize).toBe(16384);
      expect(nf4KStep(small, 2, 'matmul_nf4')).toBe(16);
      expect(nf4KStep(gpu, 3, 'matmul_nf4_fused')).toBe(32);
      const M = 70, N = 65, K = 100;
      const w = [0, 1].map((j) => doubleQuantWords(quantizeNF4(rand(N * K, j + 3, -0.2, 0.2), 64).absmax));
      const codes = [0, 1].map((j) => packWords(quantizeNF4(rand(N * K, j + 3, -0.2, 0.2), 64).packed, N * K));
      const X = rand(M * K, 7, -1, 1), dY = [rand(M * N, 8, -1, 1), rand(M * N, 9, -1, 1)];
      const run = async (g: Gpu) => {
        const t = (name: string, data: Float32Array | Uint32Array) => g.tensor(name, 'activations', data);
        const z = (name: string, n: number) => g.tensor(name, 'activations', n * 4);
        const parts = [0, 1].map((j) => ({ Wq: t(`w${j}`, codes[j]), absmax: t(`a${j}`, w[j]) }));
        const xT = t('x', X), y = z('y', M * N), G = z('g', M * N), U = z('u', M * N), Mo = z('m', M * N), dX = z('dx', M * K);
        matmulNf4Tiled(g, y, xT, parts[0].Wq, parts[0].absmax, undefined, M, N, K, { doubleQuant: true });
        matmulNf4GateUp(g, G, U, Mo, xT, parts[0], parts[1], M, N, K, { doubleQuant: true });
        matmulNf4BackwardGroup(g, dX, parts.map((q, j) => ({ ...q, dY: t(`dy${j}`, dY[j]), N })), M, K, { doubleQuant: true });
        return Promise.all([y, G, U, Mo, dX].map((b) => g.readF32(b)));
      };
      const [got, want] = [await run(small), await run(gpu)];
      await small.check();   // no pipeline over the device's limit (the 32-step form is rejected there)
      got.forEach((v, i) => expect(v, `output ${i}`).toEqual(want[i]));
      expect(() => nf4KStep(small, 2, 'matmul_nf4', 32)).toThrow(RangeError);
    } finally {
      small.destroy();
    }
  });

  test('reproduces the torch golden end to end (golden packed weights, bias)', async () => {
    for (const name of ['mm_small', 'mm_ragged']) {
      const c = golden[name];
      const M = c.M as number, N = c.N as number, K = c.K as number;
      const yT = gpu.tensor('y', 'activations', M * N * 4);
      matmulNf4(
        gpu, yT, gpu.tensor('x', 'activations', goldenArray(c.x)), gpu.tensor('wq', 'weights', packWords(bytes(c.packed), N * K)),
        gpu.tensor('absmax', 'weights', goldenArray(c.absmax)), gpu.tensor('bias', 'weights', goldenArray(c.bias)), M, N, K,
      );
      assertClose(`${name}.y`, await gpu.readF32(yT), goldenArray(c.y), TOL);
    }
  });
});
