// Opening a model for a run: parse the config, plan every buffer, check the plan fits the device,
// load the weights, and set up the LoRA adapter. The same path serves the CLI, the worker and tests.
import type { Gpu } from '../gpu/runtime.ts';
import { GpuOutOfMemoryError, ModelFileError, UsageError } from '../errors.ts';
import type { ModelFolder } from '../io/model-folder.ts';
import { parseModelConfig, type ModelConfig } from './config.ts';
import { LlamaModel } from './llama.ts';
import { LoraState, type LoraSpec } from './lora.ts';
import { loadWeights, type LoadProgress } from './load.ts';
import { Plan } from './plan.ts';
import type { ModelWeights } from './llama.ts';

export interface OpenOptions {
  quant: 'nf4' | 'none';
  /** bitsandbytes double quantization of the NF4 absmax (QLoRA's "DQ"); nf4 only. */
  doubleQuant?: boolean;
  /** Storage of the embedding, an untied lm_head and (training without checkpointing) the saved
   *  activations and LoRA intermediates: 'f16' (rounded as torch's .half(), f32 arithmetic) or 'f32'
   *  (default here, the exact path; the CLI, worker and site default to f16). */
  storage?: 'f16' | 'f32';
  /** Micro-batch shape the buffers are planned for; shorter batches reuse them. */
  batch: number;
  seqLen: number;
  lora?: LoraSpec;
  training: boolean;
  checkpointing?: boolean;
  gradAccum?: number;
  /** Longest position the RoPE tables cover (default seqLen). */
  maxPositions?: number;
  /** Plan a KV cache for generation (batch 1, maxPositions rows per layer). */
  kvCache?: boolean;
  /** Seed of the LoRA A init (PEFT init: A kaiming-uniform, B zero). */
  seed?: number;
}

export interface OpenedModel {
  config: ModelConfig;
  plan: Plan;
  model: LlamaModel;
  lora: LoraState | undefined;
}

export async function openModel(
  gpu: Gpu, folder: ModelFolder, opts: OpenOptions, onProgress?: (p: LoadProgress) => void,
): Promise<OpenedModel> {
  const config = parseModelConfig(folder.config, folder.configFile);
  const plan = new Plan(config, {
    batch: opts.batch,
    seqLen: opts.seqLen,
    quant: opts.quant,
    doubleQuant: opts.doubleQuant,
    storage: opts.storage,
    lora: opts.lora,
    training: opts.training,
    checkpointing: opts.checkpointing ?? false,
    gradAccum: opts.gradAccum,
    kvCache: opts.kvCache,
    maxPositions: opts.maxPositions ?? opts.seqLen,
    limits: gpu.limits,
  });
  // Refuse a run whose largest buffer cannot exist on this device before uploading anything.
  for (const r of plan.rows) {
    if (r.bytes > gpu.limits.maxBufferSize) throw new GpuOutOfMemoryError(r.name, r.bytes, plan.byCategory(), gpu.limits.maxBufferSize);
  }
  if (opts.doubleQuant && opts.quant !== 'nf4') {
    throw new UsageError('Double quantization applies to NF4 weights only.', 'Use --quant nf4 with --double-quant.', { field: 'double-quant' });
  }
  const weights = await loadWeights(gpu, folder, config, plan, onProgress);
  const lora = opts.lora ? new LoraState(gpu, config, opts.lora, (n) => plan.alloc(gpu, n), opts.training) : undefined;
  plan.allocRun(gpu);
  lora?.init(opts.seed ?? 0);
  await gpu.check();
  return { config, plan, model: new LlamaModel(gpu, config, weights, plan, lora), lora };
}

/** Weights already on the GPU (loaded from files or from the cache) under their own plan. */
export interface LoadedBase {
  config: ModelConfig;
  /** The plan the weights were allocated from; its maxPositions sets the RoPE tables' length. */
  plan: Plan;
  weights: ModelWeights;
}

export interface DerivedModel extends OpenedModel {
  /** Frees the run buffers and LoRA state this model allocated (never the shared weights). */
  dispose(): void;
}

/**
 * A run (training, inference, another LoRA spec) over weights that are already loaded, so the site
 * can train, chat and import adapters without reloading the base model. The new plan adopts every
 * weight buffer of `base`; only LoRA and run buffers are allocated. Quantization (double quantization
 * included), the embedding and head's storage and maxPositions are the base's (opts.quant,
 * opts.doubleQuant and opts.maxPositions are ignored); opts.storage (default: the base's) sets the
 * run's own saved activations.
 */
export async function openOverWeights(gpu: Gpu, base: LoadedBase, opts: OpenOptions): Promise<DerivedModel> {
  const maxPositions = base.plan.opts.maxPositions;
  if (opts.seqLen > maxPositions) {
    throw new ModelFileError(`Sequences of ${opts.seqLen} tokens exceed the ${maxPositions} positions the model was loaded for.`,
      `Use a sequence length of ${maxPositions} or less.`, { field: 'seqLen' });
  }
  const plan = new Plan(base.config, {
    batch: opts.batch, seqLen: opts.seqLen, quant: base.plan.opts.quant, doubleQuant: base.plan.opts.doubleQuant, storage: opts.storage ?? base.plan.opts.storage,
    tableStorage: base.plan.tablesF16 ? 'f16' : 'f32', lora: opts.lora, training: opts.training,
    checkpointing: opts.checkpointing ?? false, gradAccum: opts.gradAccum, kvCache: opts.kvCache, maxPositions, limits: gpu.limits,
  });
  for (const r of plan.rows) {
    if (r.phase === 'weights') plan.adopt(r.name, base.plan.tensor(r.name));
    else if (r.phase === 'run' && r.bytes > gpu.limits.maxBufferSize) throw new GpuOutOfMemoryError(r.name, r.bytes, plan.byCategory(), gpu.limits.maxBufferSize);
  }
  const lora = opts.lora ? new LoraState(gpu, base.config, opts.lora, (n) => plan.alloc(gpu, n), opts.training) : undefined;
  const dispose = () => {
    for (const r of plan.rows) if (r.phase === 'run') plan.free(gpu, r.name);
  };
  try {
    plan.allocRun(gpu);
    lora?.init(opts.seed ?? 0);
    await gpu.check();
  } catch (e) {
    dispose();
    throw e;
  }
  return { config: base.config, plan, model: new LlamaModel(gpu, base.config, base.weights, plan, lora), lora, dispose };
}
