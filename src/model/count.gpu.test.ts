// Work per step on a real device (SwiftShader here): once warm, a training step creates no bind
// group and no buffer (per-step values live in Gpu.scalars buffers rewritten in place), and a
// decoded token creates no buffer (its readback reuses a pooled staging buffer); both stay within
// their compute passes and a token reads back only its candidates. The same figures
// for a 1B model come from `webtune bench --count` (src/gpu/counting.ts).
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Gpu, type Counters } from '../gpu/runtime.ts';
import { randomFolder } from '../node/model-bench.ts';
import { openModel } from './open.ts';
import { optimizerStep } from '../train/step.ts';
import type { Batch } from './llama.ts';
import { generationModel } from '../infer/kv-open.ts';
import { generate } from '../infer/generate.ts';

const CONFIG = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: 96, hidden_size: 32, intermediate_size: 48,
  num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, rms_norm_eps: 1e-5, rope_theta: 10000,
  max_position_embeddings: 64, tie_word_embeddings: false, bos_token_id: 1, eos_token_id: 2,
};

// Qwen3 with a sliding window of 8 from layer 1 on: the q/k norms, and full and sliding layers side
// by side, past the window both in training (16 tokens) and in decoding (up to 14 positions).
const QWEN3 = {
  architectures: ['Qwen3ForCausalLM'], model_type: 'qwen3', vocab_size: 96, hidden_size: 32, intermediate_size: 48,
  num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 12, rms_norm_eps: 1e-6, rope_theta: 1e6,
  max_position_embeddings: 64, tie_word_embeddings: true, use_sliding_window: true, sliding_window: 8, max_window_layers: 1,
};

let gpu: Gpu;
beforeAll(async () => {
  gpu = await Gpu.create();
});
afterAll(() => gpu?.destroy());

function batch(T: number, masked: number, shift: number): Batch {
  const b: Batch = { B: 1, T, ids: new Uint32Array(T), positions: new Uint32Array(T), targets: new Int32Array(T) };
  for (let i = 0; i < T; i++) {
    b.ids[i] = (i * 37 + shift) % 96;
    b.positions[i] = i;
    b.targets[i] = i < masked || i === T - 1 ? -100 : ((i + 1) * 37 + shift) % 96;
  }
  return b;
}

const created = (c0: Counters) => ({
  bindGroups: gpu.counters.bindGroupsCreated - c0.bindGroupsCreated,
  buffers: gpu.counters.buffersCreated - c0.buffersCreated,
});

describe.each([['llama', CONFIG, 7], ['qwen3 with a sliding window', QWEN3, 9]] as const)('work per warm step: %s', (_, config, perLayer) => {
  test('a warm training step (dropout on, two micro-batches, a new learning rate and token count each step) creates no bind group and no buffer, and runs the grouped backward and the fused q/k/v forward', async () => {
    const opened = await openModel(gpu, randomFolder(config, 3), {
      quant: 'nf4', batch: 1, seqLen: 16, training: true, gradAccum: 2,
      lora: { rank: 4, alpha: 8, dropout: 0.1, rslora: false, targets: ['q_proj', 'v_proj', 'down_proj'] },
    });
    const { model, lora } = opened;
    // Each step differs from the last in everything a uniform used to hold: dropout seeds (the
    // step number), the learning rate (a schedule), the bias corrections, and gradScale (how many
    // targets the step trains).
    const step = (i: number) => optimizerStep(model, lora!, [batch(16, i % 5, i), batch(16, 2, 7 * i)],
      { lr: 1e-3 * (1 - i / 10), weightDecay: 0.01, maxGradNorm: 1, seed: 5 });
    const first = await step(0);
    expect(Number.isFinite(first.loss)).toBe(true);
    for (let i = 1; i <= 3; i++) {
      const c0 = { ...gpu.counters }, k0 = new Map(gpu.kernelDispatches);
      const r = await step(i);
      // The device takes the grouped backward: per layer and micro-batch one NF4 dispatch for q/k/v
      // and one for gate/up with the SwiGLU backward inside (no swiglu_backward), and each LoRA
      // backward stage once for the q/v adapters together and once for down_proj's.
      const ran = (k: string) => (gpu.kernelDispatches.get(k) ?? 0) - (k0.get(k) ?? 0);
      const perLayerStep = config.num_hidden_layers * 2;
      expect(ran('matmul_nf4_backward.group')).toBe(2 * perLayerStep);
      expect(ran('swiglu_backward.main')).toBe(0);
      for (const stage of ['dU', 'dB', 'dA', 'dX']) expect(ran(`lora_backward.${stage}_main`)).toBe(2 * perLayerStep);
      // And the fused q/k/v forward: per layer and micro-batch one NF4 dispatch for q/k/v, one for
      // the q and v adapters' first stages and one for their second stages (lora_forward takes its
      // subgroups variant, a kernel of its own name, where the device has them).
      const ranAny = (k: string) => ran(k) + ran(k.replace('.', '+subgroups.'));
      for (const k of ['matmul_nf4_fused.qkv', 'lora_forward.down_qkv', 'lora_forward.up_qkv']) expect(ranAny(k), k).toBe(perLayerStep);
      expect(Number.isFinite(r.loss)).toBe(true);
      expect(created(c0), `step ${i}`).toEqual({ bindGroups: 0, buffers: 0 });
      expect(gpu.counters.readbacks - c0.readbacks).toBe(1);
      // No buffer copy splits the forward (the norms start the residual sums): one compute pass per
      // upload-separated stretch: each micro-batch's forward and backward, then the optimizer.
      expect(gpu.counters.passes - c0.passes, `step ${i}`).toBeLessThanOrEqual(4);
    }
  }, 300_000);

  test('a decoded token creates no buffer and no bind group', async () => {
    const opened = await openModel(gpu, randomFolder(config, 4), {
      quant: 'nf4', batch: 1, seqLen: 24, training: false,
      lora: { rank: 4, alpha: 8, dropout: 0, rslora: false, targets: ['q_proj', 'v_proj'] },
    });
    const gen = generationModel(gpu, opened);
    const prompt = [1, 5, 9, 13];
    const opts = { maxNewTokens: 6, temperature: 0.8, topK: 20, topP: 0.9, seed: 3 };
    const a = await generate(gen.model, prompt, opts);
    // Later tokens sit at positions the first run never reached: the decode position is a value
    // rewritten in place, not a new uniform.
    const c0 = { ...gpu.counters };
    const b = await generate(gen.model, prompt, { ...opts, maxNewTokens: 10 });
    expect(b.slice(0, 6)).toEqual(a); // same seed, same tokens
    expect(created(c0)).toEqual({ bindGroups: 0, buffers: 0 });
    expect(gpu.counters.readbacks - c0.readbacks).toBe(10);
    // Each token reads back its 32 best logits (top-k 20), 256 bytes, not the row; and the prompt and
    // each token run in one compute pass each (no buffer copies between the layers).
    expect(gpu.counters.readbackBytes - c0.readbackBytes).toBe(10 * 32 * 8);
    expect(gpu.counters.passes - c0.passes).toBeLessThanOrEqual(11);
    // Dispatches per forward (the prompt's, then each token's): per layer 7 (the input norm with the
    // q/v adapters, q/k/v, RoPE + cache, attention, o_proj, the norm with gate/up/SwiGLU, down_proj),
    // plus Qwen3's two per-head norms; then embedding, final norm, head and candidate selection (14
    // a layer before the fused projections).
    expect(gpu.counters.dispatches - c0.dispatches).toBeLessThanOrEqual(10 * (perLayer * config.num_hidden_layers + 4));
    gen.dispose();
  }, 300_000);
});
