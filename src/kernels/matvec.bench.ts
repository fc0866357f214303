import type { BenchCase, BenchFamily } from './bench-case.ts';
import { matvec } from './matvec.ts';
import { matvecNf4 } from './matvec_nf4.ts';
import { nf4Words } from '../quant/nf4.ts';

// Decode: one token (M = 1) through a square projection (q/o, hidden 2048), an MLP one (gate/up
// 8192 x 2048) and a Llama-3 logits head (128256 x 2048), in f32 and NF4. These are bandwidth-bound:
// report GB/s against the card's DRAM bandwidth, not GFLOP/s. The f32 logits weight is 1.05 GB (an
// untied f32 head); the NF4 one 148 MB. Tiny shapes for SwiftShader, where a 256-invocation workgroup
// costs milliseconds (about 0.1 s per case here). Inputs are zero-filled: the timing does not depend
// on the values.
export const benches: BenchFamily = (full) => {
  const M = 1;
  const shapes = full
    ? [{ N: 2048, K: 2048 }, { N: 8192, K: 2048 }, { N: 128256, K: 2048 }]
    : [{ N: 64, K: 128 }, { N: 128, K: 256 }, { N: 256, K: 128 }];
  const cases: BenchCase[] = [];
  for (const { N, K } of shapes) {
    // Packed codes (NK/2 bytes) + f32 absmax (NK/64 * 4 bytes) = 0.5625 bytes per weight.
    const wBytes = (N * K) / 2 + ((N * K) / 64) * 4;
    cases.push(
      {
        kernel: 'matvec',
        shape: { M, N, K },
        flops: 2 * M * N * K,
        // W and x read once, y written.
        bytes: 4 * (N * K + M * K + M * N),
        setup(gpu) {
          const y = gpu.tensor('y', 'activations', M * N * 4), x = gpu.tensor('x', 'activations', M * K * 4);
          const W = gpu.tensor('W', 'weights', N * K * 4);
          return () => matvec(gpu, y, x, W, M, N, K);
        },
      },
      {
        kernel: 'matvec_nf4',
        shape: { M, N, K },
        // 2MNK for the product, N bias adds per row (Qwen2 q/k/v have a bias).
        flops: 2 * M * N * K + M * N,
        // W (packed + absmax), x and bias read, y written.
        bytes: wBytes + 4 * (M * K + N + M * N),
        setup(gpu) {
          const y = gpu.tensor('y', 'activations', M * N * 4), x = gpu.tensor('x', 'activations', M * K * 4);
          const Wq = gpu.tensor('Wq', 'weights', nf4Words(N * K) * 4);
          const absmax = gpu.tensor('absmax', 'weights', Math.ceil((N * K) / 64) * 4);
          const bias = gpu.tensor('bias', 'weights', N * 4);
          return () => matvecNf4(gpu, y, x, Wq, absmax, bias, M, N, K);
        },
      },
    );
  }
  return cases;
};
