// Gemma 2/3's extra per-layer state through the engine's memory modes, against the exact path that
// llama.gpu.test.ts checks with PyTorch: the sublayer outputs before their norms (ao, mo) and those
// norms' rstd must be saved (f32 per layer, or in the f16 image), recomputed under checkpointing,
// and the (1 + w) norm weights and the local RoPE tables must survive the weight cache.
import { afterAll, beforeAll, expect, test } from 'vitest';
import { fileURLToPath } from 'node:url';
import { Gpu } from '../gpu/runtime.ts';
import { goldenBatch, loadGolden, tensorMap, type GoldenTensor } from '../testing/compare.ts';
import { openModelFolder } from '../io/model-folder.ts';
import { directorySources } from '../node/fs-source.ts';
import { countTargets } from '../train/step.ts';
import { PROJS } from './lora.ts';
import { LlamaModel, type Batch } from './llama.ts';
import { openModel, type OpenedModel, type OpenOptions } from './open.ts';
import { loadCachedWeights, weightShards } from './load-cached.ts';
import { Plan } from './plan.ts';

type Golden = Record<string, any>;

let gpu: Gpu;
beforeAll(async () => {
  gpu = await Gpu.create();
});
afterAll(() => gpu?.destroy());

async function open(name: string, golden: Golden, opts: Partial<OpenOptions>): Promise<OpenedModel> {
  const dir = fileURLToPath(new URL(`../../fixtures/models/${name}`, import.meta.url));
  return openModel(gpu, await openModelFolder(await directorySources(dir)), {
    quant: 'nf4', batch: 2, seqLen: (golden.ids as GoldenTensor).shape[1], training: true, storage: 'f32',
    lora: { rank: golden.config.r, alpha: golden.config.alpha, dropout: 0, rslora: false, targets: [...PROJS] }, ...opts,
  });
}

/** One training step from the golden's trained adapter: the summed loss and the LoRA gradients. */
async function trainStep(m: OpenedModel, golden: Golden, b: Batch): Promise<{ loss: number; grads: Float32Array }> {
  m.lora!.load(tensorMap(golden.nf4.adapter));
  gpu.clear(m.lora!.grads);
  m.model.step(b, { gradScale: 1 / countTargets(b), seed: 0, training: true });
  const loss = (await gpu.readF32(m.plan.tensor('loss'), 0, b.B * b.T)).reduce((a, x) => a + x, 0);
  return { loss, grads: await gpu.readF32(m.lora!.grads) };
}

const relDiff = (a: Float32Array, b: Float32Array) => Math.hypot(...a.map((x, i) => x - b[i])) / Math.hypot(...a);

test.each(['tiny-gemma2', 'tiny-gemma3'])('%s: checkpointing recomputes the sublayer outputs and their norms to the same loss and gradients', async (name) => {
  const golden = loadGolden(`model_${name}`) as Golden;
  const b = goldenBatch(golden.ids as GoldenTensor, golden.labels as GoldenTensor, 0, 2);
  const plain = await trainStep(await open(name, golden, {}), golden, b);
  const ckpt = await trainStep(await open(name, golden, { checkpointing: true }), golden, b);
  expect(ckpt.loss).toBeCloseTo(plain.loss, 4);
  expect(relDiff(plain.grads, ckpt.grads)).toBeLessThan(1e-5);
}, 300_000);

test.each(['tiny-gemma2', 'tiny-gemma3'])('%s: f16 storage keeps ao and mo in the f16 image, their rstd f32 per layer, and one step stays close to f32', async (name) => {
  const golden = loadGolden(`model_${name}`) as Golden;
  const b = goldenBatch(golden.ids as GoldenTensor, golden.labels as GoldenTensor, 0, 2);
  const f32 = await open(name, golden, {});
  const f16 = await open(name, golden, { storage: 'f16' });
  expect([...f16.plan.savedFields.keys()]).toEqual(expect.arrayContaining(['ao', 'mo']));
  for (const n of ['rstd3', 'rstd4']) expect(f16.plan.rows.some((r) => r.name === `act.1.${n}`), n).toBe(true);
  const [a, c] = [await trainStep(f32, golden, b), await trainStep(f16, golden, b)];
  expect(Math.abs(c.loss - a.loss) / a.loss).toBeLessThan(2e-3);
  const d = relDiff(a.grads, c.grads);
  expect(d).toBeGreaterThan(0); // the f16 path really ran
  expect(d).toBeLessThan(1e-2);
}, 300_000);

test('tiny-gemma3 read back as cache shards (its 1 + w norms included) loads to the same logits, local RoPE rebuilt', async () => {
  const golden = loadGolden('model_tiny-gemma3') as Golden;
  const b = goldenBatch(golden.ids as GoldenTensor, golden.labels as GoldenTensor, 0, 2);
  const a = await open('tiny-gemma3', golden, { training: false, lora: undefined });
  expect(a.model.weights.ropeLocalCos).toBeDefined();
  const shards = [];
  for await (const s of weightShards(gpu, a.plan)) shards.push(s);
  const plan = new Plan(a.config, a.plan.opts);
  const weights = await loadCachedWeights(gpu, a.config, plan, (async function* () { yield* shards; })());
  plan.allocRun(gpu);
  expect(weights.layers[0].attnOutNorm && weights.layers[0].mlpOutNorm && weights.layers[0].qNorm).toBeTruthy();
  const cached = new LlamaModel(gpu, a.config, weights, plan, undefined);
  const n = b.B * b.T * a.config.vocabSize;
  expect(await gpu.readF32(cached.forwardLogits(b), 0, n)).toEqual(await gpu.readF32(a.model.forwardLogits(b), 0, n));
}, 300_000);

test('tiny-gemma3 with f16 storage: the memory plan (extra norms, saved sublayer outputs, local RoPE tables) is what the GPU holds while training', async () => {
  const golden = loadGolden('model_tiny-gemma3') as Golden;
  const b = goldenBatch(golden.ids as GoldenTensor, golden.labels as GoldenTensor, 0, 2);
  const fresh = await Gpu.create();
  try {
    const dir = fileURLToPath(new URL('../../fixtures/models/tiny-gemma3', import.meta.url));
    const { plan, model } = await openModel(fresh, await openModelFolder(await directorySources(dir)), {
      quant: 'nf4', batch: 2, seqLen: b.T, training: true, storage: 'f16', doubleQuant: true, gradAccum: 1,
      lora: { rank: golden.config.r, alpha: golden.config.alpha, dropout: 0, rslora: false, targets: [...PROJS] },
    });
    model.step(b, { gradScale: 1 / countTargets(b), seed: 0, training: true });
    await fresh.sync();
    expect(fresh.peakBytes).toBe(plan.peakBytes());
    for (const [cat, bytes] of Object.entries(plan.byCategory())) expect(fresh.bytes[cat as keyof typeof fresh.bytes], cat).toBe(bytes);
  } finally {
    fresh.destroy();
  }
}, 300_000);
