import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Gpu } from '../gpu/runtime.ts';
import { assertClose, goldenArray, loadGolden, rand, type GoldenTensor } from '../testing/compare.ts';
import { dqAbsmax, doubleQuantWords, packWords, quantizeNF4 } from '../quant/nf4.ts';
import { matmulNf4, matmulNf4Tiled, nf4TilesFit } from './matmul_nf4.ts';
import { matmulNf4Ref } from './matmul_nf4.ref.ts';

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

describe('matmul_nf4 kernel', () => {
  let gpu: Gpu;
  beforeAll(async () => {
    gpu = await Gpu.create();
  });
  afterAll(() => gpu?.destroy());

  // Ragged in every dimension against the 64×64 tile and the 16-wide K step; K % 64 != 0 makes NF4
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
    const yT = gpu.tensor('y', 'activations', y0);
    matmulNf4(
      gpu, yT, gpu.tensor('x', 'activations', X), gpu.tensor('wq', 'weights', Wq), gpu.tensor('absmax', 'weights', absmax),
      bias && gpu.tensor('bias', 'weights', bias), M, N, K, { accumulate, blocksize },
    );
    const y = y0.slice();
    matmulNf4Ref(y, X, Wq, absmax, bias, M, N, K, { accumulate, blocksize });
    assertClose('y', await gpu.readF32(yT), y, TOL);
  });

  // DQ on ragged shapes (blocks crossing rows, runs of 256 blocks crossing tiles): against the twin,
  // and bit for bit against the same kernel fed the decoded f32 absmax (same scales, same order).
  test.each([
    [5, 7, 100, false, true, 64],
    [70, 130, 200, true, false, 64],
    [17, 33, 50, true, true, 32],
  ])('double-quantized absmax at M=%i N=%i K=%i accumulate=%s bias=%s blocksize=%i', async (M, N, K, accumulate, hasBias, blocksize) => {
    const { packed, absmax } = quantizeNF4(rand(N * K, N * K + 2, -0.2, 0.2), blocksize);
    const Wq = packWords(packed, N * K), dq = doubleQuantWords(absmax);
    const X = rand(M * K, M + K, -1, 1);
    const bias = hasBias ? rand(N, 3 * N, -1, 1) : undefined;
    const y0 = rand(M * N, M * N + 1, -1, 1);
    const yT = gpu.tensor('y', 'activations', y0), yPlain = gpu.tensor('y.plain', 'activations', y0);
    const xT = gpu.tensor('x', 'activations', X), wT = gpu.tensor('wq', 'weights', Wq), bT = bias && gpu.tensor('bias', 'weights', bias);
    matmulNf4(gpu, yT, xT, wT, gpu.tensor('absmax.dq', 'weights', dq), bT, M, N, K, { accumulate, blocksize, doubleQuant: true });
    const f32Absmax = gpu.tensor('absmax', 'weights', dqAbsmax(dq, Math.ceil((N * K) / blocksize)));
    matmulNf4(gpu, yPlain, xT, wT, f32Absmax, bT, M, N, K, { accumulate, blocksize });
    const y = y0.slice();
    matmulNf4Ref(y, X, Wq, dq, bias, M, N, K, { accumulate, blocksize, doubleQuant: true });
    const got = await gpu.readF32(yT);
    assertClose('y', got, y, TOL);
    expect(got).toEqual(await gpu.readF32(yPlain));
  });

  // The bounds-free form (whole tiles) against the checked one on the same shapes: same products in
  // the same order, so the same bits. K % 64 == 16 makes NF4 blocks cross rows inside a K step.
  test.each([
    [64, 64, 16, false, false],
    [128, 192, 80, true, true],
    [64, 128, 144, false, true],
  ])('the bounds-free form equals the checked form bit for bit at M=%i N=%i K=%i accumulate=%s dq=%s', async (M, N, K, accumulate, doubleQuant) => {
    expect(nf4TilesFit(M, N, K)).toBe(true);
    const { packed, absmax } = quantizeNF4(rand(N * K, N * K + 5, -0.2, 0.2), 64);
    const Wq = packWords(packed, N * K);
    const X = rand(M * K, M + K + 1, -1, 1), bias = rand(N, N + 1, -1, 1);
    const y0 = rand(M * N, M * N + 2, -1, 1);
    const xT = gpu.tensor('x', 'activations', X), wT = gpu.tensor('wq', 'weights', Wq), bT = gpu.tensor('bias', 'weights', bias);
    const aT = gpu.tensor('absmax', 'weights', doubleQuant ? doubleQuantWords(absmax) : absmax);
    const fit = gpu.tensor('y.fit', 'activations', y0), checked = gpu.tensor('y.checked', 'activations', y0);
    matmulNf4Tiled(gpu, fit, xT, wT, aT, bT, M, N, K, { accumulate, doubleQuant });
    matmulNf4Tiled(gpu, checked, xT, wT, aT, bT, M, N, K, { accumulate, doubleQuant, fit: false });
    const y = y0.slice();
    matmulNf4Ref(y, X, Wq, doubleQuant ? doubleQuantWords(absmax) : absmax, bias, M, N, K, { accumulate, doubleQuant });
    const got = await gpu.readF32(fit);
    assertClose('y', got, y, TOL);
    expect(got).toEqual(await gpu.readF32(checked));
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
