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

export interface OpenOptions {
  quant: 'nf4' | 'none';
  /** bitsandbytes double quantization of the NF4 absmax (QLoRA's "DQ"); nf4 only. */
  doubleQuant?: boolean;
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
  if (config.slidingWindow !== null && opts.seqLen > config.slidingWindow) {
    throw new ModelFileError(
      `Sequences of ${opts.seqLen} tokens exceed the model's sliding attention window of ${config.slidingWindow}.`,
      `Use --seq-len ${config.slidingWindow} or less: sliding-window attention is not implemented.`,
      { field: 'sliding_window' },
    );
  }
  const plan = new Plan(config, {
    batch: opts.batch,
    seqLen: opts.seqLen,
    quant: opts.quant,
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
  const weights = await loadWeights(gpu, folder, config, plan, onProgress, opts.doubleQuant);
  const lora = opts.lora ? new LoraState(gpu, config, opts.lora, (n) => plan.alloc(gpu, n), opts.training) : undefined;
  plan.allocRun(gpu);
  lora?.init(opts.seed ?? 0);
  await gpu.check();
  return { config, plan, model: new LlamaModel(gpu, config, weights, plan, lora), lora };
}
