import type { BenchCase, BenchFamily } from './bench-case.ts';
import { matmul } from './matmul.ts';

// The three layouts a LoRA training step runs: Y = X·Wᵀ (NT, forward), dX = dY·W (NN, backward
// input) and dW = dYᵀ·X (TN, weight gradient). Full: T = 512 tokens against a 2048×2048 projection.
// matmul_f16 is left out: a bench case cannot ask for shader-f16 before it is listed.
export const benches: BenchFamily = (full) => {
  const M = full ? 512 : 64, N = full ? 2048 : 96, K = full ? 2048 : 80;
  const variant = (name: string, transA: boolean, transB: boolean): BenchCase => ({
    kernel: 'matmul',
    // The layout flags ride along in `shape` (0/1): it is the only field that tells the cases apart.
    shape: { M, N, K, transA: Number(transA), transB: Number(transB) },
    flops: 2 * M * N * K,
    bytes: 4 * (M * K + K * N + M * N),
    setup(gpu) {
      const c = gpu.tensor(`c.${name}`, 'activations', M * N * 4);
      const a = gpu.tensor(`a.${name}`, 'activations', M * K * 4);
      const b = gpu.tensor(`b.${name}`, 'weights', K * N * 4);
      return () => matmul(gpu, c, a, b, M, N, K, { transA, transB });
    },
  });
  return [variant('nn', false, false), variant('nt', false, true), variant('tn', true, false)];
};
