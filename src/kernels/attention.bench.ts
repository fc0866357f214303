import type { BenchFamily } from './bench-case.ts';
import { attentionForward } from './attention_forward.ts';
import { attentionBackward } from './attention_backward.ts';

// Causal attention does half of the T² score matrix: forward = q kᵀ and P v at 2·D FLOPs per
// (query, key) pair each, over T²/2 pairs per head, i.e. 2·B·H·T²·D. The backward recomputes q kᵀ and
// adds dO vᵀ, dS k, dSᵀ q, Pᵀ dO: 5 such products, 2.5× the forward (FA2's accounting).
export const benches: BenchFamily = (full) => {
  const B = 1, H = full ? 32 : 4, Hkv = full ? 8 : 2, D = full ? 64 : 32;
  const fwdFlops = (T: number) => 2 * B * H * T * T * D;
  return (full ? [512, 2048] : [40]).flatMap((T) => {
    const qBytes = B * T * H * D * 4, kvBytes = B * T * Hkv * D * 4, statBytes = B * H * T * 4;
    const shape = { B, T, H, Hkv, D };
    return [
      {
        kernel: 'attention_forward',
        shape,
        flops: fwdFlops(T),
        // q, k, v read once; o and lse written.
        bytes: 2 * qBytes + 2 * kvBytes + statBytes,
        setup(gpu) {
          const o = gpu.tensor('o', 'activations', qBytes), lse = gpu.tensor('lse', 'activations', statBytes);
          const q = gpu.tensor('q', 'activations', qBytes);
          const k = gpu.tensor('k', 'activations', kvBytes), v = gpu.tensor('v', 'activations', kvBytes);
          return () => attentionForward(gpu, o, lse, q, k, v, B, T, H, Hkv, D);
        },
      },
      {
        kernel: 'attention_backward',
        shape,
        flops: 2.5 * fwdFlops(T),
        // dO, q, o read and dq written; k, v read and dk, dv written; lse read.
        bytes: 4 * qBytes + 4 * kvBytes + statBytes,
        setup(gpu) {
          const act = (label: string, size: number) => gpu.tensor(label, 'activations', size);
          const dq = act('dq', qBytes), dk = act('dk', kvBytes), dv = act('dv', kvBytes);
          const dO = act('dO', qBytes), q = act('q', qBytes), k = act('k', kvBytes), v = act('v', kvBytes);
          const o = act('o', qBytes), lse = act('lse', statBytes);
          return () => attentionBackward(gpu, dq, dk, dv, dO, q, k, v, o, lse, B, T, H, Hkv, D);
        },
      },
    ];
  });
};
