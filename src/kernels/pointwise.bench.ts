// Bench cases for the pointwise and row kernels: RoPE, SwiGLU, embedding gather, fused cross-entropy.
// All are bandwidth-bound; flops count one per add/mul/exp, bytes the minimum traffic of one run.
import type { Gpu } from '../gpu/runtime.ts';
import type { BenchCase, BenchFamily } from './bench-case.ts';
import { crossEntropy } from './cross_entropy.ts';
import { embedding, embeddingChunks, type EmbeddingTable } from './embedding.ts';
import { ropeBackward } from './rope_backward.ts';
import { ropeForward } from './rope_forward.ts';
import { plainRopeTables } from '../testing/rope-tables.ts';
import { swigluBackward } from './swiglu_backward.ts';
import { swigluForward } from './swiglu_forward.ts';

export const benches: BenchFamily = (full) => {
  // Llama 3.2 1B-like shapes on a real GPU; tiny ones for SwiftShader.
  const rope = full ? { B: 1, T: 512, H: 32, D: 64 } : { B: 1, T: 16, H: 4, D: 64 };
  const mlp = full ? { N: 512, F: 8192 } : { N: 16, F: 512 };
  const emb = full ? { N: 512, C: 2048, V: 128256 } : { N: 16, C: 256, V: 4096 };
  const ce = full ? { Tc: 256, V: 128256 } : { Tc: 4, V: 4096 };

  const ropeCase = (kernel: 'rope_forward' | 'rope_backward'): BenchCase => {
    const { B, T, H, D } = rope, n = B * T * H * D;
    return {
      kernel,
      shape: rope,
      flops: 3 * n, // two multiplies and an add per output element
      bytes: 4 * (2 * n + B * T + 2 * T * (D / 2)), // x read and written, positions, the used table rows
      setup(gpu: Gpu) {
        const { cos, sin } = plainRopeTables(D, 5e5, T);
        const x = gpu.tensor('x', 'activations', n * 4);
        const pos = gpu.tensor('positions', 'activations', Uint32Array.from({ length: B * T }, (_, i) => i % T));
        const c = gpu.tensor('cos', 'scratch', cos), s = gpu.tensor('sin', 'scratch', sin);
        const run = kernel === 'rope_forward' ? ropeForward : ropeBackward;
        return () => run(gpu, x, pos, c, s, B, T, H, D);
      },
    };
  };

  const { N, F } = mlp;
  const { Tc, V } = ce;
  return [
    ropeCase('rope_forward'),
    ropeCase('rope_backward'),
    {
      kernel: 'swiglu_forward',
      shape: mlp,
      flops: 5 * N * F, // exp, add, divide, two multiplies
      bytes: 4 * 3 * N * F,
      setup(gpu) {
        const h = gpu.tensor('h', 'activations', N * F * 4);
        const g = gpu.tensor('g', 'activations', N * F * 4), u = gpu.tensor('u', 'activations', N * F * 4);
        return () => swigluForward(gpu, h, g, u, N, F);
      },
    },
    {
      kernel: 'swiglu_backward',
      shape: mlp,
      flops: 11 * N * F,
      bytes: 4 * 5 * N * F,
      setup(gpu) {
        const dg = gpu.tensor('dg', 'activations', N * F * 4), du = gpu.tensor('du', 'activations', N * F * 4);
        const dh = gpu.tensor('dh', 'activations', N * F * 4);
        const g = gpu.tensor('g', 'activations', N * F * 4), u = gpu.tensor('u', 'activations', N * F * 4);
        return () => swigluBackward(gpu, dg, du, dh, g, u, N, F);
      },
    },
    {
      kernel: 'embedding',
      shape: emb,
      flops: 0,
      bytes: 4 * (2 * emb.N * emb.C + emb.N), // gathered rows read, x written, ids
      setup(gpu) {
        // The full table (1 GiB at V=128256, C=2048) is chunked to the device's binding limit, as
        // the model loader does; the chunks stay zero-filled (a gather does not care).
        const chunks = embeddingChunks(emb.V, emb.C, gpu.limits);
        const table: EmbeddingTable = {
          V: emb.V, C: emb.C,
          chunks: chunks.map((ch, i) => ({ ...ch, E: gpu.tensor(`E[${i}]`, 'weights', ch.rows * emb.C * 4) })),
        };
        const ids = gpu.tensor('ids', 'activations', Uint32Array.from({ length: emb.N }, (_, i) => (i * 7919) % emb.V));
        const x = gpu.tensor('x', 'activations', emb.N * emb.C * 4);
        return () => embedding(gpu, x, ids, table, emb.N);
      },
    },
    {
      kernel: 'cross_entropy',
      shape: ce,
      flops: 8 * Tc * V, // online max/sum (compare, sub, exp, add) and the gradient (sub, exp, sub, mul)
      bytes: 4 * (2 * Tc * V + 2 * Tc), // logits read once and dlogits written (the kernel reads twice), loss, targets
      setup(gpu) {
        const loss = gpu.tensor('loss', 'activations', Tc * 4);
        const logits = gpu.tensor('logits', 'scratch', Tc * V * 4);
        const targets = gpu.tensor('targets', 'activations', Int32Array.from({ length: Tc }, (_, i) => (i % 5 === 0 ? -100 : (i * 31) % V)));
        // In place: from the second run on, the logits are the previous run's dlogits; the cost is the same.
        return () => crossEntropy(gpu, loss, logits, targets, Tc, V, 1 / Tc);
      },
    },
  ];
};
