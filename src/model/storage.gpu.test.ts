// f16 storage (storage: 'f16'): the embedding and the head are rounded to f16 at load (torch's
// .half()), stored as packed pairs and widened inside the gather and the logits matmul; while
// training without checkpointing, each layer's saved activations and LoRA intermediates are kept as
// an f16 image (pack_f16) and widened before its backward. All arithmetic stays f32. Against the f32
// model on the three tiny checkpoints (untied BF16 head, tied F16, F32): eval loss within 2e-3
// relative, the same greedy tokens, training losses within 5e-3, the saved images exactly the f32
// activations rounded, and the memory plan equal to what the GPU holds in both storages.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { fileURLToPath } from 'node:url';
import { Gpu } from '../gpu/runtime.ts';
import { goldenBatch, loadGolden, tensorMap, type GoldenTensor } from '../testing/compare.ts';
import { openModelFolder } from '../io/model-folder.ts';
import { directorySources } from '../node/fs-source.ts';
import { generationModel } from '../infer/kv-open.ts';
import { generate } from '../infer/generate.ts';
import { countTargets, optimizerStep } from '../train/step.ts';
import { PROJS } from './lora.ts';
import type { Batch } from './llama.ts';
import { openModel, type OpenedModel, type OpenOptions } from './open.ts';
import { loadCachedWeights, weightShards } from './load-cached.ts';
import { LlamaModel } from './llama.ts';
import { Plan } from './plan.ts';
import { storedF16, unpackF16Ref } from '../kernels/pack_f16.ref.ts';

type Golden = Record<string, any>;
const MODELS = ['tiny-llama', 'tiny-qwen2', 'tiny-mistral'];

let gpu: Gpu;
beforeAll(async () => {
  gpu = await Gpu.create();
});
afterAll(() => gpu?.destroy());

async function open(g: Gpu, name: string, golden: Golden, opts: Partial<OpenOptions>): Promise<OpenedModel> {
  const dir = fileURLToPath(new URL(`../../fixtures/models/${name}`, import.meta.url));
  return openModel(g, await openModelFolder(await directorySources(dir)), {
    quant: 'nf4', batch: 2, seqLen: (golden.ids as GoldenTensor).shape[1], training: false,
    lora: { rank: golden.config.r, alpha: golden.config.alpha, dropout: 0, rslora: false, targets: [...PROJS] }, ...opts,
  });
}

/** Mean loss over the micro-batches, forward only. */
async function evalLoss(m: OpenedModel, batches: Batch[]): Promise<number> {
  let sum = 0, count = 0;
  for (const b of batches) {
    const n = countTargets(b);
    m.model.step(b, { gradScale: 1, seed: 0, training: false });
    sum += (await gpu.readF32(m.plan.tensor('loss'), 0, b.B * b.T)).reduce((a, x) => a + x, 0);
    count += n;
  }
  return sum / count;
}

describe.each(MODELS)('%s with f16 embedding and head', (name) => {
  const golden = loadGolden(`model_${name}`) as Golden;
  const ids = golden.ids as GoldenTensor, labels = golden.labels as GoldenTensor;
  const batches = [goldenBatch(ids, labels, 0, 2), goldenBatch(ids, labels, 2, 4)];

  test('eval loss within 2e-3 relative of f32 storage, the same greedy tokens, half the table bytes', async () => {
    const { prompt, tokens } = golden.nf4.greedy as { prompt: number[]; tokens: number[] };
    const adapter = tensorMap(golden.nf4.adapter);
    const results = [];
    for (const storage of ['f32', 'f16'] as const) {
      const m = await open(gpu, name, golden, { storage, maxPositions: Math.max(ids.shape[1], prompt.length + tokens.length) });
      m.lora!.load(adapter);
      const loss = await evalLoss(m, batches);
      const gen = generationModel(gpu, m, prompt.length + tokens.length);
      const greedy = await generate(gen.model, prompt, { maxNewTokens: tokens.length });
      gen.dispose();
      results.push({ loss, greedy, embed: m.plan.row('embed').bytes, m });
    }
    const [f32, f16] = results;
    expect(Math.abs(f16.loss - f32.loss) / f32.loss, `loss f16 ${f16.loss} vs f32 ${f32.loss}`).toBeLessThan(2e-3);
    expect(f32.greedy).toEqual(tokens); // the f32 path is today's, PyTorch's continuation
    expect(f16.greedy).toEqual(f32.greedy);
    const { vocabSize: V, hiddenSize: C } = f16.m.config;
    expect(f16.embed).toBe(Math.ceil((V * C) / 2) * 4);
    expect(f32.embed).toBe(V * C * 4);
    if (name === 'tiny-qwen2') {
      // An F16 checkpoint loses nothing in f16, and matmul_packed_f16 sums in matmul's order: the
      // logits are bit-identical to the f32 path's.
      const b = batches[0], n = b.B * b.T * V;
      expect(await gpu.readF32(f16.m.model.forwardLogits(b), 0, n)).toEqual(await gpu.readF32(f32.m.model.forwardLogits(b), 0, n));
    }
  }, 300_000); // two models, eval and 8 decode steps each, on SwiftShader
});

test.each(MODELS)('%s: 5 AdamW steps with f16 storage (tables, saved activations, LoRA intermediates) stay within 5e-3 of f32 storage', async (name) => {
  const golden = loadGolden(`model_${name}`) as Golden;
  const ids = golden.ids as GoldenTensor, labels = golden.labels as GoldenTensor;
  const batches = [goldenBatch(ids, labels, 0, 2), goldenBatch(ids, labels, 2, 4)];
  const init = tensorMap(golden.init_adapter);
  const losses: number[][] = [];
  for (const storage of ['f32', 'f16'] as const) {
    const m = await open(gpu, name, golden, { storage, training: true, gradAccum: 2 });
    expect(m.plan.savedF16).toBe(storage === 'f16');
    m.lora!.load(init);
    m.lora!.resetOptimizer();
    const run: number[] = [];
    for (const s of golden.nf4.steps as { lr: number }[]) {
      run.push((await optimizerStep(m.model, m.lora!, batches, { lr: s.lr, weightDecay: 0.01, maxGradNorm: 1, seed: 0 })).loss);
    }
    losses.push(run);
  }
  for (let i = 0; i < losses[0].length; i++) {
    expect(Math.abs(losses[1][i] - losses[0][i]) / losses[0][i], `step ${i}: ${losses[1][i]} vs ${losses[0][i]}`).toBeLessThan(5e-3);
  }
}, 600_000); // two models × 5 steps × 2 micro-batches on SwiftShader

test('tiny-qwen2 (F16 checkpoint): the saved f16 images are exactly the f32 path\'s activations rounded to f16', async () => {
  // An F16 checkpoint loses nothing in an f16 table, so both forwards are bit-identical and every
  // saved field of every layer can be compared with the f32 model's own saved copy.
  const golden = loadGolden('model_tiny-qwen2') as Golden;
  const b = goldenBatch(golden.ids as GoldenTensor, golden.labels as GoldenTensor, 0, 2);
  const adapter = tensorMap(golden.nf4.adapter); // B != 0: U and the LoRA outputs matter
  const [f32, f16] = [await open(gpu, 'tiny-qwen2', golden, { storage: 'f32', training: true }), await open(gpu, 'tiny-qwen2', golden, { storage: 'f16', training: true })];
  for (const m of [f32, f16]) {
    m.lora!.load(adapter);
    m.model.step(b, { gradScale: 1 / countTargets(b), seed: 0, training: true });
  }
  expect(f16.plan.savedFields.size).toBe(6 + 1 + PROJS.length);
  for (let l = 0; l < f16.config.numLayers; l++) {
    const img = await gpu.readU32(f16.plan.tensor(`act.${l}.f16`));
    for (const [field, f] of f16.plan.savedFields) {
      const start = f16.plan.savedGroups.find((g) => g.name === f.group)!.image + f.offset;
      const saved = unpackF16Ref(img.subarray(start / 2, (start + f.count) / 2 + 1), f.count);
      // The f32 path keeps a layer's LoRA U's in one buffer (plan.loraUFields), the rest by name.
      const u = f32.plan.loraUFields.get(field);
      const ref = await gpu.readF32(f32.plan.tensor(u ? `act.${l}.U` : `act.${l}.${field}`), u ? u.offset * 4 : 0, f.count);
      expect(saved, `layer ${l} ${field}`).toEqual(storedF16(ref));
    }
    expect(await gpu.readF32(f16.plan.tensor(`act.${l}.lse`)), `layer ${l} lse`).toEqual(await gpu.readF32(f32.plan.tensor(`act.${l}.lse`)));
  }
  // The gradients use the rounded activations: close to the f32 ones, not equal.
  const [g32, g16] = [await gpu.readF32(f32.lora!.grads), await gpu.readF32(f16.lora!.grads)];
  const norm = Math.hypot(...g32), diff = Math.hypot(...g32.map((x, i) => x - g16[i]));
  expect(diff / norm).toBeGreaterThan(0);
  expect(diff / norm).toBeLessThan(1e-2);
}, 300_000);

test.each([
  ['f16', true],
  ['f32', false],
] as const)('the memory plan with %s storage (double quantization: %s) is what the GPU holds while training, by category', async (storage, doubleQuant) => {
  const golden = loadGolden('model_tiny-llama') as Golden;
  const ids = golden.ids as GoldenTensor, labels = golden.labels as GoldenTensor;
  const b = goldenBatch(ids, labels, 0, 2);
  const fresh = await Gpu.create();
  try {
    const { plan, model } = await open(fresh, 'tiny-llama', golden, { storage, doubleQuant, training: true, gradAccum: 1 });
    model.step(b, { gradScale: 1 / countTargets(b), seed: 0, training: true });
    await fresh.sync();
    expect(fresh.peakBytes).toBe(plan.peakBytes());
    for (const [cat, bytes] of Object.entries(plan.byCategory())) expect(fresh.bytes[cat as keyof typeof fresh.bytes], cat).toBe(bytes);
  } finally {
    fresh.destroy();
  }
});

test('an f16 + double-quantized model read back as cache shards loads to the same logits', async () => {
  const golden = loadGolden('model_tiny-llama') as Golden;
  const b = goldenBatch(golden.ids as GoldenTensor, golden.labels as GoldenTensor, 0, 2);
  const a = await open(gpu, 'tiny-llama', golden, { storage: 'f16', doubleQuant: true, lora: undefined });
  const shards = [];
  for await (const s of weightShards(gpu, a.plan)) shards.push(s);
  const plan = new Plan(a.config, a.plan.opts);
  const weights = await loadCachedWeights(gpu, a.config, plan, (async function* () { yield* shards; })());
  plan.allocRun(gpu);
  const cached = new LlamaModel(gpu, a.config, weights, plan, undefined);
  const n = b.B * b.T * a.config.vocabSize;
  expect(await gpu.readF32(cached.forwardLogits(b), 0, n)).toEqual(await gpu.readF32(a.model.forwardLogits(b), 0, n));
});

test('tiny-qwen3: f16 storage saves the per-head norms\' inputs too, and one training step stays close to f32', async () => {
  // Qwen3 normalizes q and k per head: their inputs (qr, kr) join the f16 image, their rstd stay
  // f32 per layer. A BF16 checkpoint rounds in an f16 table, so the comparison is closeness.
  const golden = loadGolden('model_tiny-qwen3') as Golden;
  const b = goldenBatch(golden.ids as GoldenTensor, golden.labels as GoldenTensor, 0, 2);
  const adapter = tensorMap(golden.nf4.adapter);
  const [f32, f16] = [await open(gpu, 'tiny-qwen3', golden, { storage: 'f32', training: true }), await open(gpu, 'tiny-qwen3', golden, { storage: 'f16', training: true })];
  expect([...f16.plan.savedFields.keys()]).toEqual(expect.arrayContaining(['qr', 'kr']));
  const losses: number[] = [];
  for (const m of [f32, f16]) {
    m.lora!.load(adapter);
    m.model.step(b, { gradScale: 1 / countTargets(b), seed: 0, training: true });
    losses.push((await gpu.readF32(m.plan.tensor('loss'), 0, b.B * b.T)).reduce((a, x) => a + x, 0));
  }
  expect(Math.abs(losses[1] - losses[0]) / losses[0]).toBeLessThan(2e-3);
  for (let l = 0; l < f16.config.numLayers; l++) {
    const [r32, r16] = [await gpu.readF32(f32.plan.tensor(`act.${l}.rstdq`)), await gpu.readF32(f16.plan.tensor(`act.${l}.rstdq`))];
    for (let i = 0; i < r32.length; i++) expect(Math.abs(r16[i] - r32[i]) / r32[i], `layer ${l} rstdq[${i}]`).toBeLessThan(1e-2);
  }
  const [g32, g16] = [await gpu.readF32(f32.lora!.grads), await gpu.readF32(f16.lora!.grads)];
  const norm = Math.hypot(...g32), diff = Math.hypot(...g32.map((x, i) => x - g16[i]));
  expect(diff / norm).toBeGreaterThan(0);
  expect(diff / norm).toBeLessThan(1e-2);
}, 300_000);

test('tiny-phi3: f16 storage and checkpointing train the fused LoRA modules like f32, and cache shards load to the same logits', async () => {
  // The fused qkv_proj / gate_up_proj keep one saved U each (shared by their row slices) in the f16
  // image; checkpointing recomputes them. Loading from cache shards assembles the split parts.
  const golden = loadGolden('model_tiny-phi3') as Golden;
  const b = goldenBatch(golden.ids as GoldenTensor, golden.labels as GoldenTensor, 0, 2);
  const adapter = tensorMap(golden.nf4.adapter);
  const runs = [
    await open(gpu, 'tiny-phi3', golden, { storage: 'f32', training: true }),
    await open(gpu, 'tiny-phi3', golden, { storage: 'f16', training: true }),
    await open(gpu, 'tiny-phi3', golden, { storage: 'f32', training: true, checkpointing: true }),
  ];
  expect([...runs[1].plan.savedFields.keys()]).toEqual(expect.arrayContaining(['U.qkv_proj', 'U.gate_up_proj']));
  const grads: Float32Array[] = [];
  for (const m of runs) {
    m.lora!.load(adapter);
    gpu.clear(m.lora!.grads);
    m.model.step(b, { gradScale: 1 / countTargets(b), seed: 0, training: true });
    grads.push(await gpu.readF32(m.lora!.grads));
  }
  const rel = (g: Float32Array) => Math.hypot(...grads[0].map((x, i) => x - g[i])) / Math.hypot(...grads[0]);
  expect(rel(grads[1])).toBeGreaterThan(0);
  expect(rel(grads[1])).toBeLessThan(1e-2);
  expect(rel(grads[2])).toBeLessThan(1e-5); // checkpointing recomputes the same f32 values
  const a = await open(gpu, 'tiny-phi3', golden, { storage: 'f32', lora: undefined });
  const shards = [];
  for await (const s of weightShards(gpu, a.plan)) shards.push(s);
  const plan = new Plan(a.config, a.plan.opts);
  const weights = await loadCachedWeights(gpu, a.config, plan, (async function* () { yield* shards; })());
  plan.allocRun(gpu);
  const cached = new LlamaModel(gpu, a.config, weights, plan, undefined);
  const n = b.B * b.T * a.config.vocabSize;
  expect(await gpu.readF32(cached.forwardLogits(b), 0, n)).toEqual(await gpu.readF32(a.model.forwardLogits(b), 0, n));
}, 300_000);
