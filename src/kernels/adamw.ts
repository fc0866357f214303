import shader from '../../shaders/adamw.wgsl?raw';
import { grid, params, type Binding, type Gpu } from '../gpu/runtime.ts';

const WG = 256;

/** torch.optim.AdamW hyperparameters for one step, plus clip_grad_norm_'s max_norm. */
export interface AdamWConfig {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** 1-based number of this update (torch increments state['step'] before using it). */
  step: number;
  /** clip_grad_norm_ max_norm; 0 turns clipping off. */
  maxGradNorm: number;
  /** Multiplies the gradient before clipping (e.g. to undo a loss scale). Default 1. */
  gradScale?: number;
}

/** The Params struct of adamw.wgsl: scalars formed in f64 here, rounded to f32 once in the uniform. */
export function adamwParams(n: number, c: AdamWConfig): ArrayBuffer {
  if (!Number.isInteger(c.step) || c.step < 1) throw new RangeError(`adamw: step ${c.step} must be an integer >= 1`);
  if (!(c.maxGradNorm >= 0)) throw new RangeError(`adamw: maxGradNorm ${c.maxGradNorm} must be >= 0`);
  const bc1 = 1 - c.beta1 ** c.step;
  const bc2 = 1 - c.beta2 ** c.step;
  return params(
    [n],
    [1 - c.lr * c.weightDecay, c.beta1, 1 - c.beta1, c.beta2, 1 - c.beta2, c.eps, c.lr / bc1, Math.sqrt(bc2),
      c.maxGradNorm, c.gradScale ?? 1],
  );
}

/**
 * One AdamW step over the flat LoRA arena, in place on param, m, v. `norm` is grad_norm's output
 * (read on the GPU for clipping; bind it even when maxGradNorm is 0). n defaults to param's length.
 */
export function adamw(
  gpu: Gpu,
  b: { param: Binding; grad: Binding; m: Binding; v: Binding; norm: Binding },
  c: AdamWConfig,
  n = b.param.size / 4,
): void {
  const k = gpu.kernel('adamw', shader, { overrides: { WG } });
  // The step and learning rate change every call: a persistent uniform rewritten in place keeps the
  // dispatch's bind group the same from step to step.
  gpu.dispatch(k, [b.param, b.m, b.v, b.grad, b.norm], gpu.scalars('adamw.params', adamwParams(n, c)), grid(Math.ceil(n / WG)));
}
