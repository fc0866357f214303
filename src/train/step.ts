// One optimizer step over a list of micro-batches (gradient accumulation), as Transformers'
// Trainer does it: the loss is the mean over every unmasked target of the whole step
// (num_items_in_batch), gradients are clipped by their global norm, then AdamW. One readback per
// step: the per-token losses of every micro-batch and the gradient norm, copied into one buffer.
import { gradNorm } from '../kernels/grad_norm.ts';
import { adamw } from '../kernels/adamw.ts';
import type { Batch, LlamaModel } from '../model/llama.ts';
import type { LoraState } from '../model/lora.ts';
import { IGNORE_INDEX } from '../kernels/cross_entropy.ts';

export interface StepConfig {
  lr: number;
  weightDecay: number;
  /** 0 turns clipping off. */
  maxGradNorm: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Mixed with the step number and micro-batch index into dropout seeds. */
  seed: number;
}

export interface StepResult {
  /** Mean cross-entropy over the step's trained tokens. */
  loss: number;
  /** Global L2 norm of the LoRA gradients before clipping (what clip_grad_norm_ returns). */
  gradNorm: number;
  /** Trained (unmasked) target tokens. */
  tokens: number;
}

export function countTargets(b: Batch): number {
  let n = 0;
  for (const t of b.targets) if (t !== IGNORE_INDEX) n++;
  return n;
}

export function microSeed(seed: number, step: number, micro: number): number {
  let h = (Math.imul(seed ^ 0x5bd1e995, 0x01000193) ^ Math.imul(step + 1, 0x9e3779b1) ^ Math.imul(micro + 1, 0x85ebca77)) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

export async function optimizerStep(model: LlamaModel, lora: LoraState, micro: Batch[], c: StepConfig): Promise<StepResult> {
  const gpu = model.gpu, plan = model.plan;
  const tokens = micro.reduce((s, b) => s + countTargets(b), 0);
  const report = plan.tensor('optim.report'), norm = plan.tensor('optim.norm');
  gpu.clear(lora.grads);
  let off = 0;
  micro.forEach((b, i) => {
    // A step with no trained token still runs (its gradient is zero), so counters stay regular.
    model.step(b, { gradScale: tokens ? 1 / tokens : 0, seed: microSeed(c.seed, lora.step, i), training: true });
    const n = b.B * b.T;
    gpu.copy(plan.tensor('loss'), 0, report, off * 4, n * 4);
    off += n;
  });
  gradNorm(gpu, norm, plan.tensor('optim.partials'), lora.grads, lora.totalFloats);
  adamw(gpu, { param: lora.params, grad: lora.grads, m: lora.m, v: lora.v, norm }, {
    lr: c.lr, beta1: c.beta1 ?? 0.9, beta2: c.beta2 ?? 0.999, eps: c.eps ?? 1e-8,
    weightDecay: c.weightDecay, step: lora.step + 1, maxGradNorm: c.maxGradNorm,
  }, lora.totalFloats);
  lora.step++;
  gpu.copy(norm, 0, report, off * 4, 8);
  const r = await gpu.readF32(report, 0, off + 2);
  let sum = 0;
  for (let i = 0; i < off; i++) sum += r[i];
  return { loss: tokens ? sum / tokens : 0, gradNorm: r[off + 1], tokens };
}
