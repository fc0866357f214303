import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Gpu } from '../gpu/runtime.ts';
import { assertClose, finiteDifference, goldenArray, loadGolden, rand, type GoldenTensor } from '../testing/compare.ts';
import { dequantizeNF4, dqAbsmax, doubleQuantWords, packWords, quantizeNF4 } from '../quant/nf4.ts';
import { matmulNf4Backward } from './matmul_nf4_backward.ts';
import { matmulNf4BackwardRef } from './matmul_nf4_backward.ref.ts';

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
    const dxT = gpu.tensor('dx', 'activations', dx0);
    matmulNf4Backward(
      gpu, dxT, gpu.tensor('dy', 'activations', dY), gpu.tensor('wq', 'weights', Wq), gpu.tensor('absmax', 'weights', absmax),
      M, N, K, { accumulate, blocksize },
    );
    const dx = dx0.slice();
    matmulNf4BackwardRef(dx, dY, Wq, absmax, M, N, K, { accumulate, blocksize });
    assertClose('dx', await gpu.readF32(dxT), dx, TOL);
  });

  // DQ: against the twin, and bit for bit against the kernel fed the decoded f32 absmax.
  test.each([
    [5, 7, 100, true, 64],
    [70, 130, 200, false, 64],
    [17, 33, 50, true, 32],
  ])('double-quantized absmax at M=%i N=%i K=%i accumulate=%s blocksize=%i', async (M, N, K, accumulate, blocksize) => {
    const { packed, absmax } = quantizeNF4(rand(N * K, N * K + 9, -0.2, 0.2), blocksize);
    const Wq = packWords(packed, N * K), dq = doubleQuantWords(absmax);
    const dY = rand(M * N, M * N, -1, 1);
    const dx0 = rand(M * K, M * K + 3, -1, 1);
    const dxT = gpu.tensor('dx', 'activations', dx0), dxPlain = gpu.tensor('dx.plain', 'activations', dx0);
    const dyT = gpu.tensor('dy', 'activations', dY), wT = gpu.tensor('wq', 'weights', Wq);
    matmulNf4Backward(gpu, dxT, dyT, wT, gpu.tensor('absmax.dq', 'weights', dq), M, N, K, { accumulate, blocksize, doubleQuant: true });
    const f32Absmax = gpu.tensor('absmax', 'weights', dqAbsmax(dq, Math.ceil((N * K) / blocksize)));
    matmulNf4Backward(gpu, dxPlain, dyT, wT, f32Absmax, M, N, K, { accumulate, blocksize });
    const dx = dx0.slice();
    matmulNf4BackwardRef(dx, dY, Wq, dq, M, N, K, { accumulate, blocksize, doubleQuant: true });
    const got = await gpu.readF32(dxT);
    assertClose('dx', got, dx, TOL);
    expect(got).toEqual(await gpu.readF32(dxPlain));
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
