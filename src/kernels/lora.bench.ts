import type { BenchFamily } from './bench-case.ts';
import { loraForward } from './lora_forward.ts';
import { loraBackward, loraBackwardScratchBytes } from './lora_backward.ts';

// One LoRA-adapted projection of a 1-2B model (hidden 2048) over 512 tokens at rank 8; tiny for SwiftShader.
export const benches: BenchFamily = (full) => {
  const M = full ? 512 : 64, K = full ? 2048 : 256, N = full ? 2048 : 256, R = 8;
  const dims = { M, N, K, R };
  const opts = { scale: 16 / R, dropout: 0.05, seed: 1 };
  return [
    {
      kernel: 'lora_forward',
      shape: { M, N, K, R },
      // down 2MKR, up 2MNR, plus the scale-and-add onto Y (2MN).
      flops: 2 * M * K * R + 2 * M * N * R + 2 * M * N,
      // x, A, B read; U written and read back; Y read and written.
      bytes: 4 * (M * K + R * K + N * R + 2 * M * R + 2 * M * N),
      setup(gpu) {
        const Y = gpu.tensor('Y', 'activations', M * N * 4), U = gpu.tensor('U', 'activations', M * R * 4);
        const x = gpu.tensor('x', 'activations', M * K * 4);
        const A = gpu.tensor('A', 'lora', R * K * 4), B = gpu.tensor('B', 'lora', N * R * 4);
        return () => loraForward(gpu, Y, U, x, A, B, dims, opts);
      },
    },
    {
      kernel: 'lora_backward',
      shape: { M, N, K, R },
      // dU, dB: 2MNR each; dA, dX: 2MKR each; the mask-and-add onto dX: 2MK.
      flops: 4 * M * N * R + 4 * M * K * R + 2 * M * K,
      // dY, x, A, B, U read; dA, dB written; dU written and read; dX read and written (split-K's partial
      // sums, a few per output of dU, dB, dA, are not counted: the minimum traffic).
      bytes: 4 * (M * N + M * K + 2 * R * K + 2 * N * R + 3 * M * R + 2 * M * K),
      setup(gpu) {
        const t = (label: string, n: number) => gpu.tensor(label, 'activations', n * 4);
        const dX = t('dX', M * K), grads = t('dA,dB', R * K + N * R);
        const work = gpu.tensor('work', 'scratch', loraBackwardScratchBytes(dims)); // dU and the split-K partials
        const dY = t('dY', M * N), x = t('x', M * K), lora = t('A,B', R * K + N * R), U = t('U', M * R);
        return () => loraBackward(gpu, dX, grads, work, x, lora, [{ dY, U, N, a: 0, b: R * K }], { M, K, R }, { ...opts, accumulate: true });
      },
    },
  ];
};
