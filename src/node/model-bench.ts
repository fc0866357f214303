// `webtune bench --shape NAME|DIR`: a model of a real shape with random weights (no download), run
// through the same loader and training step as a real one. Prints training and forward tokens/s,
// dispatches and readbacks per step, GPU bytes by category, and the memory plan's prediction next
// to the measured peak. `--plan-only` prints the plan without touching a GPU. `--count` runs one
// training step and one decoded token of the real model code on a device that only counts
// (src/gpu/counting.ts) and prints what each asks of the GPU:
// dispatches, passes, submits, readbacks and their bytes, buffers and bind groups created.
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Gpu } from '../gpu/runtime.ts';
import { UsageError } from '../errors.ts';
import type { FolderTensor, ModelFolder } from '../io/model-folder.ts';
import { parseModelConfig } from '../model/config.ts';
import { expectedWeights } from '../model/weights.ts';
import { Plan } from '../model/plan.ts';
import { openModel } from '../model/open.ts';
import type { LoraModule, LoraSpec } from '../model/lora.ts';
import type { Batch } from '../model/llama.ts';
import { optimizerStep } from '../train/step.ts';
import { generationModel } from '../infer/kv-open.ts';
import { generate } from '../infer/generate.ts';
import { Rng, sampleToken } from '../infer/sample.ts';
import { countingGpu, diffCounts, type DeviceCounts } from '../gpu/counting.ts';
import { assembleWeights } from '../model/load-cached.ts';
import { LoraState } from '../model/lora.ts';
import { LlamaModel } from '../model/llama.ts';
import { SHAPES } from '../model/shapes.ts';

export { SHAPES };

/** A model folder whose tensors are generated on demand (small random values, norms at 1). */
export function randomFolder(config: Record<string, unknown>, seed = 1): ModelFolder {
  const cfg = parseModelConfig(config);
  const specs = expectedWeights(cfg);
  const tensor = (name: string, shape: number[], norm: boolean): FolderTensor => {
    const n = shape.reduce((a, b) => a * b, 1);
    return {
      name, dtype: 'F32', shape, begin: 0, end: n * 4, file: 'random',
      async readFloat32() {
        const out = new Float32Array(n);
        if (norm) return out.fill(1);
        // A 4096-value random block repeated: the bench measures speed, not what the model says.
        let s = seed;
        const block = Math.min(n, 4096);
        for (let i = 0; i < block; i++) {
          s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
          out[i] = ((s >>> 8) / 16777216 - 0.5) * 0.04;
        }
        for (let i = block; i < n; i += block) out.copyWithin(i, 0, Math.min(block, n - i));
        return out;
      },
      async readBytes() {
        return new Uint8Array((await this.readFloat32()).buffer);
      },
    };
  };
  const all = specs.map((s) => tensor(s.name, s.shape, s.role === 'norm'));
  return {
    config, configFile: 'config.json', tokenizer: null, tokenizerConfig: null, generationConfig: null, shards: ['random'],
    async tensorIndex() {
      return new Map(all.map((t) => [t.name, t]));
    },
    async *tensors() {
      yield* all;
    },
  };
}

export interface ModelBenchOptions {
  shape: string;
  seqLen: number;
  batch: number;
  steps: number;
  quant: 'nf4' | 'none';
  /** NF4 absmax double-quantized (bitsandbytes compress_statistics); nf4 only. */
  doubleQuant?: boolean;
  /** Storage of the embedding and lm_head (default f32). */
  storage?: 'f16' | 'f32';
  rank: number;
  targets: LoraModule[];
  checkpointing: boolean;
  planOnly: boolean;
  /** Count what a training step and a decoded token ask of the GPU, on a device that only counts. */
  count?: boolean;
}

async function shapeConfig(shape: string): Promise<Record<string, unknown>> {
  if (SHAPES[shape]) return SHAPES[shape];
  try {
    return JSON.parse(await readFile(join(resolve(shape), 'config.json'), 'utf8'));
  } catch {
    throw new UsageError(`--shape "${shape}" is neither a known shape nor a folder with a config.json.`, `Known shapes: ${Object.keys(SHAPES).join(', ')}.`, { field: 'shape' });
  }
}

function randomBatch(B: number, T: number, V: number): Batch {
  const b: Batch = { B, T, ids: new Uint32Array(B * T), positions: new Uint32Array(B * T), targets: new Int32Array(B * T) };
  for (let i = 0; i < B * T; i++) {
    b.ids[i] = (i * 7919) % V;
    b.positions[i] = i % T;
    b.targets[i] = i % T === T - 1 ? -100 : ((i + 1) * 7919) % V;
  }
  return b;
}

export async function modelBench(o: ModelBenchOptions): Promise<Record<string, unknown>> {
  const config = await shapeConfig(o.shape);
  const cfg = parseModelConfig(config);
  const lora = { rank: o.rank, alpha: 2 * o.rank, dropout: 0.05, rslora: false, targets: o.targets };
  const shape = { shape: o.shape, seqLen: o.seqLen, batch: o.batch, quant: o.quant, doubleQuant: o.doubleQuant ?? false, storage: o.storage ?? 'f32', rank: o.rank, targets: o.targets, checkpointing: o.checkpointing };
  // Planning needs binding limits; without a device, assume a desktop GPU's (Dawn's top tiers).
  const planFor = (limits: Plan['opts']['limits']) => new Plan(cfg, {
    batch: o.batch, seqLen: o.seqLen, quant: o.quant, doubleQuant: o.doubleQuant, storage: o.storage, lora, training: true, checkpointing: o.checkpointing,
    gradAccum: 1, maxPositions: o.seqLen, limits,
  });
  if (o.count) return { ...shape, count: await countRun(cfg, lora, o) };
  if (o.planOnly) {
    const plan = planFor({ maxStorageBufferBindingSize: 2 ** 31 - 4, maxBufferSize: 2 ** 32 });
    return { ...shape, plan: { peakBytes: plan.peakBytes(), byCategory: plan.byCategory(), lossChunkTokens: plan.lossChunk } };
  }
  const gpu = await Gpu.create();
  try {
    const t0 = performance.now();
    const { model, lora: state, plan } = await openModel(gpu, randomFolder(config), {
      quant: o.quant, doubleQuant: o.doubleQuant, storage: o.storage, batch: o.batch, seqLen: o.seqLen, lora, training: true, checkpointing: o.checkpointing, gradAccum: 1,
    });
    await gpu.sync();
    const loadSeconds = (performance.now() - t0) / 1000;
    const b = randomBatch(o.batch, o.seqLen, cfg.vocabSize);
    const step = () => optimizerStep(model, state!, [b], { lr: 1e-4, weightDecay: 0, maxGradNorm: 1, seed: 0 });
    await step(); // warm-up: pipelines and bind groups
    const c0 = { ...gpu.counters };
    let t = performance.now();
    for (let i = 0; i < o.steps; i++) await step();
    const trainSeconds = (performance.now() - t) / 1000;
    const perStep = {
      dispatches: (gpu.counters.dispatches - c0.dispatches) / o.steps,
      readbacks: (gpu.counters.readbacks - c0.readbacks) / o.steps,
      submits: (gpu.counters.submits - c0.submits) / o.steps,
    };
    model.step(b, { gradScale: 0, seed: 0, training: false });
    await gpu.sync();
    t = performance.now();
    for (let i = 0; i < o.steps; i++) model.step(b, { gradScale: 0, seed: 0, training: false });
    await gpu.sync();
    const fwdSeconds = (performance.now() - t) / 1000;
    const tokens = o.batch * o.seqLen;
    // The plan covers training; the generation buffers added below are measured separately.
    const trainPeak = gpu.peakBytes, trainBytes = { ...gpu.bytes };
    // Decode: a 16-token prompt, then one token per step over the KV cache (one logits readback each).
    const decodeNew = Math.max(1, Math.min(32, o.seqLen - 16));
    const gen = generationModel(gpu, { config: cfg, plan, model, lora: state }, Math.min(o.seqLen, 16 + decodeNew));
    const prompt = Array.from(b.ids.subarray(0, Math.min(16, o.seqLen - 1)));
    await generate(gen.model, prompt, { maxNewTokens: 1 });
    t = performance.now();
    const produced = await generate(gen.model, prompt, { maxNewTokens: decodeNew });
    const decodeSeconds = (performance.now() - t) / 1000;
    gen.dispose();
    return {
      ...shape,
      adapter: gpu.adapterInfo,
      loadSeconds,
      trainTokensPerSecond: (tokens * o.steps) / trainSeconds,
      forwardTokensPerSecond: (tokens * o.steps) / fwdSeconds,
      decodeTokensPerSecond: produced.length / decodeSeconds,
      perStep,
      gpuBytes: { peak: trainPeak, byCategory: trainBytes, withGeneration: gpu.peakBytes },
      plan: { peakBytes: plan.peakBytes(), byCategory: plan.byCategory(), lossChunkTokens: plan.lossChunk },
      planError: (trainPeak - plan.peakBytes()) / plan.peakBytes(),
    };
  } finally {
    gpu.destroy();
  }
}

/** What one warm step asks of the GPU (see src/gpu/counting.ts). */
export type StepCount = Pick<DeviceCounts, 'dispatches' | 'passes' | 'submits' | 'readbacks' | 'readbackBytes' | 'buffersCreated' | 'bindGroupsCreated' | 'copies' | 'writes' | 'writeBytes'>
  & { /** Dispatches per kernel, most first. */ byKernel: Record<string, number> };

function stepCount(c: DeviceCounts, kernels: Map<string, number>, kernels0: Map<string, number>): StepCount {
  const { dispatches, passes, submits, readbacks, readbackBytes, buffersCreated, bindGroupsCreated, copies, writes, writeBytes } = c;
  const byKernel = [...kernels].map(([k, n]): [string, number] => [k, n - (kernels0.get(k) ?? 0)]).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
  return { dispatches, passes, submits, readbacks, readbackBytes, buffersCreated, bindGroupsCreated, copies, writes, writeBytes, byKernel: Object.fromEntries(byKernel) };
}

/** CPU milliseconds per sampled token at temperature 0.8, top-k 50, top-p 0.9 over V random logits
 *  (standard normal, times 3: a peaked distribution like a trained model's). The process's CPU time
 *  (user + system), not wall time: on a shared machine the wall clock mostly measures the others. */
export function sampleMs(V: number, tokens = 50): number {
  const r = new Rng(1);
  const rows = Array.from({ length: 4 }, () => {
    const row = new Float32Array(V);
    for (let i = 0; i < V; i++) row[i] = 3 * Math.sqrt(-2 * Math.log(1 - r.next())) * Math.cos(2 * Math.PI * r.next());
    return row;
  });
  const o = { temperature: 0.8, topK: 50, topP: 0.9 };
  const draws = new Rng(2);
  for (const row of rows) sampleToken(row, o, draws); // warm-up (JIT)
  const t = process.cpuUsage();
  for (let i = 0; i < tokens; i++) sampleToken(rows[i % rows.length], o, draws);
  const { user, system } = process.cpuUsage(t);
  return (user + system) / 1000 / tokens;
}

/**
 * One optimizer step and one decoded token of the real model code (llama.ts, train/step.ts,
 * infer/generate.ts) against the counting device, each counted warm: the first runs, the second is
 * counted. Weights are allocated from the plan without data (a counting device holds none).
 */
async function countRun(cfg: ReturnType<typeof parseModelConfig>, lora: LoraSpec, o: ModelBenchOptions): Promise<Record<string, unknown>> {
  const { gpu, counts } = countingGpu();
  const plan = new Plan(cfg, {
    batch: o.batch, seqLen: o.seqLen, quant: o.quant, doubleQuant: o.doubleQuant, storage: o.storage, lora, training: true, checkpointing: o.checkpointing,
    gradAccum: 1, maxPositions: o.seqLen, limits: gpu.limits,
  });
  for (const r of plan.rows) if (r.phase === 'weights' && !r.name.startsWith('rope.')) plan.alloc(gpu, r.name);
  const weights = assembleWeights(gpu, cfg, plan);
  const state = new LoraState(gpu, cfg, lora, (n) => plan.alloc(gpu, n), true);
  plan.allocRun(gpu);
  state.init(0);
  const model = new LlamaModel(gpu, cfg, weights, plan, state);
  const b = randomBatch(o.batch, o.seqLen, cfg.vocabSize);
  const step = () => optimizerStep(model, state, [b], { lr: 1e-4, weightDecay: 0, maxGradNorm: 1, seed: 0 });
  await step();
  let c0 = { ...counts }, k0 = new Map(gpu.kernelDispatches);
  await step();
  const trainStep = stepCount(diffCounts(counts, c0), gpu.kernelDispatches, k0);
  // A decoded token: generating n + 1 tokens costs one decode step more than generating n. Both
  // include the prompt's prefill; the counted token sits at a position no earlier step has used.
  const prompt = Array.from(b.ids.subarray(0, Math.min(16, o.seqLen - 4)));
  const gen = generationModel(gpu, { config: cfg, plan, model, lora: state }, Math.min(o.seqLen, prompt.length + 3));
  await generate(gen.model, prompt, { maxNewTokens: 2 }); // warm-up
  c0 = { ...counts };
  k0 = new Map(gpu.kernelDispatches);
  await generate(gen.model, prompt, { maxNewTokens: 2 });
  const two = diffCounts(counts, c0);
  // Per kernel the same way: (k2 - k1) - (k1 - k0) = k2 + k0 - 2·k1, given as k2 against 2·k1 - k0.
  const k1 = new Map(gpu.kernelDispatches);
  c0 = { ...counts };
  await generate(gen.model, prompt, { maxNewTokens: 3 });
  const twice = new Map([...k1].map(([k, n]) => [k, 2 * n - (k0.get(k) ?? 0)]));
  const decodeToken = stepCount(diffCounts(diffCounts(counts, c0), two), gpu.kernelDispatches, twice);
  gen.dispose();
  gpu.destroy();
  return { trainStep, decodeToken, sampleMs: Number(sampleMs(cfg.vocabSize).toFixed(3)) };
}
