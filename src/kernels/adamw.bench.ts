import type { BenchFamily } from './bench-case.ts';
import { adamw } from './adamw.ts';
import { gradNorm, gradNormPartials } from './grad_norm.ts';

// The optimizer over the flat LoRA arena: 10M parameters is rank 16 on all projections of a ~1B
// model; 100k for SwiftShader. Both kernels are bandwidth-bound.
export const benches: BenchFamily = (full) => {
  const n = full ? 10_000_000 : 100_000;
  return [
    {
      kernel: 'grad_norm',
      shape: { n },
      flops: 2 * n,
      bytes: 4 * n,
      setup(gpu) {
        const grad = gpu.tensor('grad', 'lora', n * 4), norm = gpu.tensor('norm', 'optimizer', 8);
        const partials = gpu.tensor('partials', 'scratch', gradNormPartials(n) * 4);
        return () => gradNorm(gpu, norm, partials, grad, n);
      },
    },
    {
      kernel: 'adamw',
      shape: { n },
      // Clip scale, decay, two moment updates, sqrt, divide, update: about 16 flops per parameter.
      flops: 16 * n,
      // param, m, v read and written; grad read.
      bytes: 4 * 7 * n,
      setup(gpu) {
        const t = (label: string) => gpu.tensor(label, 'optimizer', n * 4);
        const param = t('param'), grad = t('grad'), m = t('m'), v = t('v');
        const norm = gpu.tensor('norm', 'optimizer', 8);
        const cfg = { lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step: 1, maxGradNorm: 1 };
        return () => adamw(gpu, { param, grad, m, v, norm }, cfg);
      },
    },
  ];
};
