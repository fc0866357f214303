// --double-quant: the NF4 absmax live on the GPU as bitsandbytes' double quantization (8-bit codes,
// an f32 absmax2 per 256 blocks, the mean offset) and the kernels decode them per block. Before, the
// loader stored the same double-quantized values dequantized to f32; the numbers must not change.
import { afterAll, beforeAll, expect, test } from 'vitest';
import { fileURLToPath } from 'node:url';
import { Gpu } from '../gpu/runtime.ts';
import { loadGolden, tensorMap, type GoldenTensor } from '../testing/compare.ts';
import { openModelFolder } from '../io/model-folder.ts';
import { directorySources } from '../node/fs-source.ts';
import { doubleDequantize, doubleQuantize, doubleQuantWords, dqWords } from '../quant/nf4.ts';
import { countTargets } from '../train/step.ts';
import { PROJS } from './lora.ts';
import type { Batch } from './llama.ts';
import { openModel, type OpenOptions } from './open.ts';

const dir = fileURLToPath(new URL('../../fixtures/models/tiny-qwen2', import.meta.url));
const golden = loadGolden('model_tiny-qwen2') as unknown as Record<string, any>;
let gpu: Gpu;
beforeAll(async () => {
  gpu = await Gpu.create();
});
afterAll(() => gpu?.destroy());

const T = 8;
const lora = { rank: golden.config.r as number, alpha: golden.config.alpha as number, dropout: 0, rslora: false, targets: [...PROJS] };
const open = async (g: Gpu, opts: Partial<OpenOptions>) =>
  openModel(g, await openModelFolder(await directorySources(dir)), { quant: 'nf4', batch: 1, seqLen: T, training: false, ...opts });

function batch(): Batch {
  const ids = (golden.ids as GoldenTensor).data.slice(0, T);
  return {
    B: 1, T, ids: Uint32Array.from(ids), positions: Uint32Array.from({ length: T }, (_, t) => t),
    targets: Int32Array.from({ length: T }, (_, t) => (t + 1 < T ? ids[t + 1] : -100)),
  };
}

test('each absmax is stored as the double-quantized words of the plain absmax, about a quarter of the bytes', async () => {
  const plain = await open(gpu, {}), dq = await open(gpu, { doubleQuant: true });
  for (const name of ['layers.0.q_proj.absmax', 'layers.1.down_proj.absmax']) {
    const a = await gpu.readF32(plain.plan.tensor(name));
    expect(await gpu.readU32(dq.plan.tensor(name))).toEqual(doubleQuantWords(a));
    expect(dq.plan.row(name).bytes).toBe(dqWords(a.length) * 4);
    expect(dq.plan.row(name).bytes).toBeLessThan(plain.plan.row(name).bytes / 3);
    // Packed codes are the same: DQ only touches the scales.
    const w = name.replace('absmax', 'weight');
    expect(await gpu.readU32(dq.plan.tensor(w))).toEqual(await gpu.readU32(plain.plan.tensor(w)));
  }
  expect(dq.plan.byCategory().weights).toBeLessThan(plain.plan.byCategory().weights);
  await expect(open(gpu, { quant: 'none', doubleQuant: true })).rejects.toThrow(/NF4/);
});

test('logits and LoRA gradients are bit-identical to f32 absmax holding the same double-quantized values', async () => {
  // The former --double-quant path: plain NF4 whose f32 absmax are replaced by their DQ round trip.
  const before = await open(gpu, { training: true, lora });
  for (const r of before.plan.rows.filter((r) => r.name.endsWith('.absmax'))) {
    const t = before.plan.tensor(r.name);
    gpu.upload(t, doubleDequantize(doubleQuantize(await gpu.readF32(t))));
  }
  const after = await open(gpu, { training: true, lora, doubleQuant: true });
  const b = batch(), V = before.config.vocabSize;
  const init = tensorMap(golden.init_adapter); // B is non-zero: gradients flow through every NF4 backward
  const run = async (m: typeof before) => {
    m.lora!.load(init);
    const logits = await gpu.readF32(m.model.forwardLogits(b), 0, T * V);
    gpu.clear(m.lora!.grads);
    m.model.step(b, { gradScale: 1 / countTargets(b), seed: 0, training: true });
    return { logits, loss: await gpu.readF32(m.plan.tensor('loss'), 0, T), grads: await gpu.readF32(m.lora!.grads) };
  };
  const x = await run(before), y = await run(after);
  expect(y.logits).toEqual(x.logits);
  expect(y.loss).toEqual(x.loss);
  expect(y.grads).toEqual(x.grads);
  expect(y.grads.some((g) => g !== 0)).toBe(true);
});

test('the memory plan with double quantization is what the GPU holds, by category', async () => {
  const fresh = await Gpu.create();
  try {
    const { plan, model } = await open(fresh, { training: true, lora, doubleQuant: true, gradAccum: 1 });
    const b = batch();
    model.step(b, { gradScale: 1 / countTargets(b), seed: 0, training: true });
    await fresh.sync();
    expect(fresh.peakBytes).toBe(plan.peakBytes());
    for (const [cat, bytes] of Object.entries(plan.byCategory())) expect(fresh.bytes[cat as keyof typeof fresh.bytes], cat).toBe(bytes);
  } finally {
    fresh.destroy();
  }
});
