import type { BenchCase, BenchFamily } from './bench-case.ts';
import { matmulNf4 } from './matmul_nf4.ts';
import { matmulNf4Backward } from './matmul_nf4_backward.ts';
import { nf4Quantize } from './nf4_quantize.ts';
import { nf4Dequantize } from './nf4_dequantize.ts';
import { nf4Words } from '../quant/nf4.ts';

// NF4 projections of a 1-2B model over 512 tokens: a square one (q/o, hidden 2048) and an MLP one
// (gate/up 8192 x 2048); plus quantizing / dequantizing a 2048 x 8192 (down) weight at load. Tiny shapes
// for SwiftShader. Inputs are zero-filled: the timing does not depend on the values.
export const benches: BenchFamily = (full) => {
  const T = full ? 512 : 32;
  const shapes = full
    ? [{ N: 2048, K: 2048 }, { N: 8192, K: 2048 }]
    : [{ N: 64, K: 128 }, { N: 256, K: 128 }];
  const cases: BenchCase[] = [];
  for (const { N, K } of shapes) {
    const M = T;
    // Packed codes (NK/2 bytes) + f32 absmax (NK/64 * 4 bytes) = 0.5625 bytes per weight.
    const wBytes = (N * K) / 2 + ((N * K) / 64) * 4;
    const weights = (gpu: Parameters<BenchCase['setup']>[0]) => ({
      Wq: gpu.tensor('Wq', 'weights', nf4Words(N * K) * 4),
      absmax: gpu.tensor('absmax', 'weights', Math.ceil((N * K) / 64) * 4),
    });
    cases.push(
      {
        kernel: 'matmul_nf4',
        shape: { M, N, K },
        // 2MNK for the product, N bias adds per row (Qwen2 q/k/v have a bias).
        flops: 2 * M * N * K + M * N,
        // X read, W (packed + absmax) and bias read, Y written.
        bytes: 4 * M * K + wBytes + 4 * N + 4 * M * N,
        setup(gpu) {
          const { Wq, absmax } = weights(gpu);
          const Y = gpu.tensor('Y', 'activations', M * N * 4), X = gpu.tensor('X', 'activations', M * K * 4);
          const bias = gpu.tensor('bias', 'weights', N * 4);
          return () => matmulNf4(gpu, Y, X, Wq, absmax, bias, M, N, K);
        },
      },
      {
        kernel: 'matmul_nf4_backward',
        shape: { M, N, K },
        flops: 2 * M * N * K + M * K,
        // dY and W read; dX read and written (accumulate, as in training with LoRA).
        bytes: 4 * M * N + wBytes + 8 * M * K,
        setup(gpu) {
          const { Wq, absmax } = weights(gpu);
          const dX = gpu.tensor('dX', 'activations', M * K * 4), dY = gpu.tensor('dY', 'activations', M * N * 4);
          return () => matmulNf4Backward(gpu, dX, dY, Wq, absmax, M, N, K, { accumulate: true });
        },
      },
    );
  }
  const Nw = full ? 2048 : 64, Kw = full ? 8192 : 256, n = Nw * Kw;
  cases.push(
    {
      kernel: 'nf4_quantize',
      shape: { N: Nw, K: Kw },
      flops: 0, // compares and integer work, not floating-point arithmetic: bandwidth-bound
      // f32 weight read; packed codes and absmax written.
      bytes: 4 * n + n / 2 + (n / 64) * 4,
      setup(gpu) {
        const w = gpu.tensor('w', 'scratch', n * 4);
        const packed = gpu.tensor('Wq', 'weights', nf4Words(n) * 4), absmax = gpu.tensor('absmax', 'weights', (n / 64) * 4);
        return () => nf4Quantize(gpu, packed, absmax, w, n);
      },
    },
    {
      kernel: 'nf4_dequantize',
      shape: { N: Nw, K: Kw },
      flops: n,
      bytes: n / 2 + (n / 64) * 4 + 4 * n,
      setup(gpu) {
        const w = gpu.tensor('w', 'scratch', n * 4);
        const packed = gpu.tensor('Wq', 'weights', nf4Words(n) * 4), absmax = gpu.tensor('absmax', 'weights', (n / 64) * 4);
        return () => nf4Dequantize(gpu, w, packed, absmax, n);
      },
    },
  );
  return cases;
};
