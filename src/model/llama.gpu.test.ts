// Parity of the whole model with the PyTorch reference (scripts/tiny_models.py): logits, loss, every
// LoRA gradient, and 5 AdamW steps with gradient accumulation, clipping and a warmup schedule, for
// ten tiny checkpoints (GQA + llama3 rope + BF16 + untied head; Qwen2 biases + tied + F16; Mistral
// MQA + linear rope + F32; Qwen3 per-head q/k norms + head_dim 24 != C/H + untied; Mistral with a
// sliding window of 4 in every layer and Qwen2 with a window of 3 from layer 1 on, both shorter than
// the 9-token sequences; Phi-3 with fused qkv_proj / gate_up_proj adapted as PEFT does, a window of
// 5 and LongRoPE past its original context of 8; and the three Gemma families below), with the base
// in full precision and in NF4.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { fileURLToPath } from 'node:url';
import { Gpu } from '../gpu/runtime.ts';
import { assertClose, goldenArray, goldenBatch, loadGolden, type GoldenTensor, tensorMap } from '../testing/compare.ts';
import { openModelFolder } from '../io/model-folder.ts';
import { directorySources } from '../node/fs-source.ts';
import { openModel } from './open.ts';
import { PROJS } from './lora.ts';
import { countTargets, optimizerStep } from '../train/step.ts';

// Gemma: GeGLU, (1 + w) norms, the scaled embedding (all three); Gemma 2's attention and final-logit
// softcaps, query_pre_attn_scalar, four norms per layer and a 3-token window in layer 0; Gemma 3's
// q/k norms and its sliding layer's own RoPE base (window 4) next to a linearly scaled global layer.
const GEMMA = ['tiny-gemma', 'tiny-gemma2', 'tiny-gemma3'];
const MODELS = ['tiny-llama', 'tiny-qwen2', 'tiny-mistral', 'tiny-qwen3', 'tiny-mistral-swa', 'tiny-qwen2-swa', 'tiny-phi3', ...GEMMA];

let gpu: Gpu;
beforeAll(async () => {
  gpu = await Gpu.create();
});
afterAll(() => gpu?.destroy());

describe.each(MODELS)('%s matches the PyTorch reference', (name) => {
  const golden = loadGolden(`model_${name}`) as unknown as Record<string, any>;
  const dir = fileURLToPath(new URL(`../../fixtures/models/${name}`, import.meta.url));
  const ids = golden.ids as GoldenTensor, labels = golden.labels as GoldenTensor;
  const b01 = goldenBatch(ids, labels, 0, 2), b23 = goldenBatch(ids, labels, 2, 4);

  test.each(['none', 'nf4'] as const)('quant %s: logits, loss, LoRA gradients, 5 AdamW steps', async (quant) => {
    const g = golden[quant];
    const folder = await openModelFolder(await directorySources(dir));
    const { model, lora, config } = await openModel(gpu, folder, {
      quant, batch: 2, seqLen: ids.shape[1], training: true, gradAccum: 2,
      lora: { rank: golden.config.r, alpha: golden.config.alpha, dropout: 0, rslora: false, targets: [...PROJS] },
    });
    const init = tensorMap(golden.init_adapter);
    lora!.load(init);
    const V = config.vocabSize;
    // Logits of the first two sequences.
    const logits = await gpu.readF32(model.forwardLogits(b01), 0, b01.B * b01.T * V);
    assertClose(`${name}/${quant} logits`, logits, goldenArray(g.logits), { atol: 2e-4, rtol: 1e-3 });
    // Loss and every LoRA gradient.
    const n = countTargets(b01);
    gpu.clear(lora!.grads);
    model.step(b01, { gradScale: 1 / n, seed: 0, training: true });
    const losses = await gpu.readF32(model.plan.tensor('loss'), 0, b01.B * b01.T);
    expect(losses.reduce((a, x) => a + x, 0) / n).toBeCloseTo(g.loss, 4);
    const grads = await lora!.tensors(lora!.grads);
    for (const [key, want] of Object.entries(g.grads as Record<string, GoldenTensor>)) {
      const mag = Math.max(...want.data.map(Math.abs));
      assertClose(`${name}/${quant} ${key}`, grads.get(key)!, Float32Array.from(want.data), { atol: 2e-3 * mag + 1e-6, rtol: 2e-3 });
    }
    // Five optimizer steps, batch 2 x grad-accum 2, lr from the reference's schedule.
    lora!.load(init);
    lora!.resetOptimizer();
    for (const [i, s] of (g.steps as { loss: number; lr: number; grad_norm: number }[]).entries()) {
      const r = await optimizerStep(model, lora!, [b01, b23], { lr: s.lr, weightDecay: 0.01, maxGradNorm: 1, seed: 0 });
      expect(r.loss, `step ${i} loss`).toBeCloseTo(s.loss, 4);
      expect(Math.abs(r.gradNorm - s.grad_norm), `step ${i} grad norm ${r.gradNorm} vs ${s.grad_norm}`).toBeLessThan(1e-3 * s.grad_norm + 1e-5);
    }
    const adapter = await lora!.tensors();
    for (const [key, want] of Object.entries(g.adapter as Record<string, GoldenTensor>)) {
      assertClose(`${name}/${quant} adapter ${key}`, adapter.get(key)!, Float32Array.from(want.data), { atol: 2e-4, rtol: 2e-3 });
    }
  });
});
