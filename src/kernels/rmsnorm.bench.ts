import type { BenchFamily } from './bench-case.ts';
import { rmsnormForward } from './rmsnorm_forward.ts';
import { rmsnormBackward } from './rmsnorm_backward.ts';

export const benches: BenchFamily = (full) => {
  const N = full ? 2048 : 64, C = full ? 2048 : 256;
  return [
    {
      kernel: 'rmsnorm_forward',
      shape: { N, C },
      flops: 4 * N * C,
      bytes: 4 * (2 * N * C + C + N),
      setup(gpu) {
        const y = gpu.tensor('y', 'activations', N * C * 4), r = gpu.tensor('rstd', 'activations', N * 4);
        const x = gpu.tensor('x', 'activations', N * C * 4), w = gpu.tensor('w', 'weights', C * 4);
        return () => rmsnormForward(gpu, y, r, x, w, N, C, 1e-6);
      },
    },
    {
      kernel: 'rmsnorm_backward',
      shape: { N, C },
      flops: 8 * N * C,
      bytes: 4 * (3 * N * C + C + N),
      setup(gpu) {
        const dx = gpu.tensor('dx', 'activations', N * C * 4), dy = gpu.tensor('dy', 'activations', N * C * 4);
        const x = gpu.tensor('x', 'activations', N * C * 4), w = gpu.tensor('w', 'weights', C * 4);
        const r = gpu.tensor('rstd', 'activations', N * 4);
        return () => rmsnormBackward(gpu, dx, dy, x, w, r, N, C);
      },
    },
  ];
};
