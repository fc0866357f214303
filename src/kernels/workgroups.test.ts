// Workgroups per dispatch of the kernels that split-K (lora_backward; matmul for the LM head) and
// the dk/dv blocking (attention_backward) changed, at Llama-3.2-1B training shapes: 512 tokens
// (batch 1), LoRA rank 8 on q_proj (N = K = 2048) and v_proj (N = 512, K = 2048), 32 query heads,
// 8 KV heads, head dim 64.
// Recorded from the real hosts on the counting device (no GPU). "Before" is version 1's grid (one
// workgroup per 64 x 16 output tile of each rank-R product; dk/dv one per 64 key rows), kept here as
// a formula so docs/performance.md's table is computed, not typed. A GPU needs about two resident
// workgroups per core (an H100 has 132 SMs) to hide memory latency.
import { describe, expect, test } from 'vitest';
import { COUNTING_LIMITS, countingGpu } from '../gpu/counting.ts';
import type { Gpu } from '../gpu/runtime.ts';
import { recordDispatches } from '../testing/dispatches.ts';
import { attentionBackward } from './attention_backward.ts';
import { loraBackward, loraBackwardScratchBytes } from './lora_backward.ts';
import { matmulNf4 } from './matmul_nf4.ts';
import { matmulNf4Backward } from './matmul_nf4_backward.ts';
import { matmul } from './matmul.ts';
import { matmulPackedF16 } from './matmul_packed_f16.ts';

// The workgroups of each kernel's last dispatch so far, by name (`file.entry`).
function recorder(gpu: Gpu): { get(name: string): number | undefined } {
  const seen = recordDispatches(gpu);
  return { get: (name) => [...seen].reverse().find((d) => d.name === name)?.workgroups };
}

const M = 512, R = 8, T = 512, H = 32, Hkv = 8, D = 64;
const tiles = (rows: number, cols: number) => Math.ceil(rows / 64) * Math.ceil(cols / 16);

describe.each([16384, 32768])('workgroups at Llama-3.2-1B shapes (%i bytes of workgroup memory)', (mem) => {
  test.each([
    ['q_proj', 2048, 2048],
    ['v_proj', 512, 2048],
  ])('lora_backward, %s', (name, N, K) => {
    const { gpu } = countingGpu({ ...COUNTING_LIMITS, maxComputeWorkgroupStorageSize: mem });
    const seen = recorder(gpu);
    const t = (n: number) => gpu.tensor('t', 'scratch', n * 4);
    loraBackward(gpu, t(M * K), t(R * K + N * R), gpu.tensor('work', 'scratch', loraBackwardScratchBytes({ M, N, K, R })),
      t(M * K), t(R * K + N * R), [{ dY: t(M * N), U: t(M * R), N, a: 0, b: R * K }], { M, K, R }, { scale: 2, dropout: 0.05, seed: 1, accumulate: true });
    const after = {
      dU: seen.get('lora_backward.dU_main')!, dB: seen.get('lora_backward.dB_main')!,
      dA: seen.get('lora_backward.dA_main')!, dX: seen.get('lora_backward.dX_main')!,
    };
    const before = { dU: tiles(M, R), dB: tiles(N, R), dA: tiles(K, R), dX: Math.ceil(M / 64) * Math.ceil(K / 64) };
    console.log(`${name}: before ${JSON.stringify(before)} after ${JSON.stringify(after)}`);
    // Each split product now has at least 128 workgroups (v_proj's dU and dB run out of 32-long
    // chunks of the reduction at 16 slices), plus the fused reductions of the previous split.
    expect(after.dU).toBeGreaterThanOrEqual(128);
    expect(after.dA).toBe(256);
    expect(after.dB).toBeGreaterThanOrEqual(128 + (M * R) / 64);
    expect(after.dX).toBe(before.dX + Math.ceil((N * R + R * K) / 256));
    expect(before.dU).toBe(8);
  });

  // Version 3 of the NF4 matmuls changed the register tile (8×4 of 128 invocations) and the K step
  // (32 at 32 KiB), not the grid: one workgroup per 64×64 output tile at either memory size.
  test.each([
    ['q_proj', 2048, 2048],
    ['v_proj', 512, 2048],
  ])('matmul_nf4 and its backward, %s', (name, N, K) => {
    const { gpu } = countingGpu({ ...COUNTING_LIMITS, maxComputeWorkgroupStorageSize: mem });
    const seen = recorder(gpu);
    const t = (n: number) => gpu.tensor('t', 'scratch', n * 4);
    matmulNf4(gpu, t(M * N), t(M * K), t((N * K) / 8), t((N * K) / 64), undefined, M, N, K);
    matmulNf4Backward(gpu, t(M * K), t(M * N), t((N * K) / 8), t((N * K) / 64), M, N, K);
    console.log(`${name}: matmul_nf4 ${seen.get('matmul_nf4.main')} matmul_nf4_backward ${seen.get('matmul_nf4_backward.main')}`);
    expect(seen.get('matmul_nf4.main')).toBe((M / 64) * (N / 64));
    expect(seen.get('matmul_nf4_backward.main')).toBe((M / 64) * (K / 64));
  });

  test('attention_backward', () => {
    const { gpu } = countingGpu({ ...COUNTING_LIMITS, maxComputeWorkgroupStorageSize: mem });
    const seen = recorder(gpu);
    const q = () => gpu.tensor('q', 'scratch', T * H * D * 4), kv = () => gpu.tensor('k', 'scratch', T * Hkv * D * 4);
    const s = () => gpu.tensor('s', 'scratch', H * T * 4);
    attentionBackward(gpu, q(), kv(), kv(), q(), q(), kv(), kv(), q(), s(), 1, T, H, Hkv, D);
    const before = { dq: H * Math.ceil(T / 64), dkv: Hkv * Math.ceil(T / 64) };
    const after = { dq: seen.get('attention_backward.dq_main')!, dkv: seen.get('attention_backward.dkv_main')! };
    console.log(`attention_backward: before ${JSON.stringify(before)} after ${JSON.stringify(after)}`);
    expect(before.dkv).toBe(64);
    expect(after.dkv).toBe(256);
  });
});

// The LM head's input gradient per loss chunk (128 tokens at a 128,256 vocabulary): dX (128, C) =
// dlogits (128, V) · head (V, C), f32 or packed-f16 head, split-K with the model's scratch
// (grad.dm: 512 tokens × the intermediate size). Before: one workgroup per 64×64 tile of dX.
describe('workgroups of the LM head input gradient (one 128-token loss chunk of a 512-token batch)', () => {
  test.each([
    ['llama-3.2-1b', 2048, 8192],
    ['llama-3-8b', 4096, 14336],
  ])('%s', (name, C, F) => {
    const V = 128256, n = 128;
    for (const [kernel, run] of [['matmul', matmul], ['matmul_packed_f16', matmulPackedF16]] as const) {
      const { gpu } = countingGpu(COUNTING_LIMITS);
      const seen = recorder(gpu);
      const t = (floats: number) => gpu.tensor('t', 'scratch', floats * 4);
      run(gpu, t(n * C), t(n * V), t(V * C), n, C, V, { splitK: t(512 * F) });
      const before = Math.ceil(n / 64) * Math.ceil(C / 64);
      const after = { slices: seen.get(`${kernel}.main`)!, sum: seen.get('matmul.sum_slices')! };
      console.log(`${name} ${kernel}: before ${before} after ${JSON.stringify(after)}`);
      expect(after.slices).toBe(256);
      expect(after.sum).toBe((n * C) / 256);
      expect(before).toBeLessThan(256);
    }
  });
});
