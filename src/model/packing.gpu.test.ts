// Packed sequences (TRL's padding-free packing) through the whole model, against the PyTorch golden
// of scripts/packed_golden.py: two rows of 12 tokens holding 6 + 3 + 2 examples (and a padding
// token) and 5 + 7, positions restarting at 0 at each example, each example's first label -100. The
// script asserts in PyTorch that these packed rows give every example the logits it gets alone, and
// the loss and LoRA gradients of the examples run separately; here the engine must match the packed
// results: logits, loss and every LoRA gradient, base in f32 and NF4, on tiny-llama (GQA) and
// tiny-mistral-swa (a window of 4, shorter than the 6- and 7-token examples).
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { fileURLToPath } from 'node:url';
import { Gpu } from '../gpu/runtime.ts';
import { assertClose, goldenArray, loadGolden, tensorMap, type GoldenTensor } from '../testing/compare.ts';
import { openModelFolder } from '../io/model-folder.ts';
import { directorySources } from '../node/fs-source.ts';
import { openModel } from './open.ts';
import { PROJS } from './lora.ts';
import type { Batch } from './llama.ts';
import { countTargets } from '../train/step.ts';
import { toModelBatch } from '../train/trainer.ts';

const golden = loadGolden('packed') as unknown as Record<string, any>;

let gpu: Gpu;
beforeAll(async () => {
  gpu = await Gpu.create();
});
afterAll(() => gpu?.destroy());

/** The golden's packed rows as the trainer hands them to the model (toModelBatch shifts the labels). */
function packedBatch(c: Record<string, any>): Batch {
  const ids = c.ids as GoldenTensor, [B, T] = ids.shape;
  const i32 = (x: GoldenTensor) => Int32Array.from(x.data);
  const mask = new Uint8Array(B * T).fill(1);
  return toModelBatch({
    B, T, input_ids: i32(ids), labels: i32(c.labels), position_ids: i32(c.position_ids), attention_mask: mask,
    seq_lengths: c.rows,
  });
}

describe.each(Object.keys(golden))('%s on packed rows matches the PyTorch golden', (name) => {
  const c = golden[name];
  const init = tensorMap(loadGolden(`model_${name}`).init_adapter as unknown as Record<string, GoldenTensor>);

  test.each(['none', 'nf4'] as const)('quant %s: logits, loss, every LoRA gradient', async (quant) => {
    const g = c[quant];
    const b = packedBatch(c);
    const folder = await openModelFolder(await directorySources(fileURLToPath(new URL(`../../fixtures/models/${name}`, import.meta.url))));
    const { model, lora, config } = await openModel(gpu, folder, {
      quant, batch: b.B, seqLen: b.T, training: true,
      lora: { rank: 4, alpha: 8, dropout: 0, rslora: false, targets: [...PROJS] },
    });
    lora!.load(init);
    const V = config.vocabSize;
    const logits = await gpu.readF32(model.forwardLogits(b), 0, b.B * b.T * V);
    assertClose(`${name}/${quant} logits`, logits, goldenArray(g.logits), { atol: 2e-4, rtol: 1e-3 });
    const n = countTargets(b);
    expect(n).toBe(g.targets);
    gpu.clear(lora!.grads);
    model.step(b, { gradScale: 1 / n, seed: 0, training: true });
    const losses = await gpu.readF32(model.plan.tensor('loss'), 0, b.B * b.T);
    expect(losses.reduce((a, x) => a + x, 0) / n).toBeCloseTo(g.loss, 4);
    const grads = await lora!.tensors(lora!.grads);
    for (const [key, want] of Object.entries(g.grads as Record<string, GoldenTensor>)) {
      const mag = Math.max(...want.data.map(Math.abs));
      assertClose(`${name}/${quant} ${key}`, grads.get(key)!, Float32Array.from(want.data), { atol: 2e-3 * mag + 1e-6, rtol: 2e-3 });
    }
  });
});
