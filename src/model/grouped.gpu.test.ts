// The grouped backward (one NF4 dispatch for q/k/v's input gradient, one for gate/up's with the
// SwiGLU or GeGLU backward inside) against the one-linear-at-a-time path a device with fewer storage
// buffers per stage than the group binds takes (9, the most the other kernels need, as the device is
// asked for here; the group binds 10): the same model,
// data and adapters on both devices give the same losses, LoRA gradients and weights, bit for bit,
// over two AdamW steps (the first makes lora_B nonzero, so the second's adapters carry gradient).
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Gpu } from '../gpu/runtime.ts';
import { randomFolder } from '../node/model-bench.ts';
import { openModel } from './open.ts';
import { optimizerStep } from '../train/step.ts';
import { PROJS, type Proj } from './lora.ts';
import type { Batch } from './llama.ts';
import { GROUP_STORAGE_BUFFERS } from '../kernels/matmul_nf4_backward.ts';

const BASE = {
  vocab_size: 96, hidden_size: 32, intermediate_size: 48, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2,
  rms_norm_eps: 1e-5, rope_theta: 10000, max_position_embeddings: 64, tie_word_embeddings: false, bos_token_id: 1, eos_token_id: 2,
};
const CONFIGS = {
  llama: { ...BASE, architectures: ['LlamaForCausalLM'], model_type: 'llama' },
  // Per-head q/k norms: q's and k's gradients reach the group through them.
  qwen3: { ...BASE, architectures: ['Qwen3ForCausalLM'], model_type: 'qwen3', head_dim: 12, tie_word_embeddings: true },
  // GeGLU: the prologue's tanh form.
  gemma: { ...BASE, architectures: ['GemmaForCausalLM'], model_type: 'gemma', head_dim: 8, hidden_act: 'gelu_pytorch_tanh', tie_word_embeddings: true },
};

function batch(T: number, shift: number): Batch {
  const b: Batch = { B: 1, T, ids: new Uint32Array(T), positions: new Uint32Array(T), targets: new Int32Array(T) };
  for (let i = 0; i < T; i++) {
    b.ids[i] = (i * 37 + shift) % 96;
    b.positions[i] = i;
    b.targets[i] = i === T - 1 ? -100 : ((i + 1) * 37 + shift) % 96;
  }
  return b;
}

let grouped: Gpu, single: Gpu;
beforeAll(async () => {
  grouped = await Gpu.create();
  single = await Gpu.create({ limitCaps: { maxStorageBuffersPerShaderStage: GROUP_STORAGE_BUFFERS - 1 } });
});
afterAll(() => {
  grouped?.destroy();
  single?.destroy();
});

describe.each(Object.entries(CONFIGS))('%s', (_, config) => {
  test.each([
    ['q, v (gate/up without adapters: the GLU prologue)', ['q_proj', 'v_proj']],
    ['all linear layers', [...PROJS]],
  ] as const)('%s: the grouped backward equals the one-linear-at-a-time path bit for bit', async (_, targets) => {
    const run = async (gpu: Gpu) => {
      const { model, lora } = await openModel(gpu, randomFolder(config, 5), {
        quant: 'nf4', batch: 1, seqLen: 12, training: true,
        lora: { rank: 4, alpha: 8, dropout: 0.1, rslora: false, targets: targets as readonly Proj[] as Proj[] },
      });
      const k0 = new Map(gpu.kernelDispatches);
      const losses = [];
      for (let i = 0; i < 2; i++) losses.push((await optimizerStep(model, lora!, [batch(12, 3 * i)], { lr: 1e-2, weightDecay: 0.01, maxGradNorm: 1, seed: 7 })).loss);
      const ran = (k: string) => (gpu.kernelDispatches.get(k) ?? 0) - (k0.get(k) ?? 0);
      return { losses, grads: await gpu.readF32(lora!.grads), params: await gpu.readF32(lora!.params), group: ran('matmul_nf4_backward.group'), swiglu: ran('swiglu_backward.main') };
    };
    const a = await run(grouped), b = await run(single);
    // Two steps, two layers: the grouped device ran q/k/v and gate/up as one dispatch each; the
    // other device ran neither, and the SwiGLU backward on its own.
    expect(a.group).toBe(2 * 2 * 2);
    expect(b.group).toBe(0);
    expect(a.swiglu).toBe((targets as readonly string[]).includes('gate_proj') ? 4 : 0);
    expect(b.swiglu).toBe(4);
    expect(a.grads.some((v) => v !== 0)).toBe(true);
    expect(a.losses).toEqual(b.losses);
    expect(a.grads).toEqual(b.grads);
    expect(a.params).toEqual(b.params);
  }, 120_000);
});
