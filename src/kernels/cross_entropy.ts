import shader from '../../shaders/cross_entropy.wgsl?raw';
import { grid, params, type Binding, type Gpu } from '../gpu/runtime.ts';
import { reductionKernel } from './subgroups.ts';

const WG = 256;

/** Targets with this value are ignored (PyTorch's default ignore_index, used for prompt tokens). */
export const IGNORE_INDEX = -100;

/**
 * Fused cross-entropy over a chunk of Tc tokens: writes loss (Tc) and overwrites logits (Tc, V) with
 * dlogits = (softmax - onehot) * gradScale, in place. targets: (Tc) i32, -100 = ignored (loss 0,
 * gradient row 0). gradScale = 1 / (unmasked targets in the whole optimizer step), so the chunks of
 * all micro-batches sum to the gradient of the step's mean loss, and sum(loss) * gradScale is that
 * mean. Reduce the loss on the GPU; never read it back per chunk. softcap c > 0 (Gemma 2's
 * final_logit_softcapping) scores c·tanh(x / c) in place of each logit x, and the gradient is d/dx.
 */
export function crossEntropy(
  gpu: Gpu, loss: Binding, logits: Binding, targets: Binding, Tc: number, V: number, gradScale: number, softcap = 0,
): void {
  if (!Number.isFinite(softcap) || softcap < 0) throw new RangeError(`cross_entropy: softcap ${softcap} must be a non-negative number`);
  const k = reductionKernel(gpu, 'cross_entropy', shader, { overrides: { WG } });
  // gradScale changes with every step's token count: a persistent uniform per chunk shape, rewritten
  // in place, keeps the bind groups from step to step.
  gpu.dispatch(k, [loss, logits, targets], gpu.scalars(`cross_entropy.params.${Tc}x${V}`, params([Tc, V], [gradScale, softcap])), grid(Tc));
}

/**
 * Tokens per cross-entropy chunk: the most rows whose f32 logits (Tc, V) fit one storage binding
 * (and one buffer), capped at maxTokens (e.g. the micro-batch's B*T). V=151936 at the 128 MiB
 * default binding gives 220 tokens. The matmuls producing and consuming the chunk use the same Tc.
 */
export function crossEntropyChunkTokens(
  V: number, limits: Pick<GPUSupportedLimits, 'maxStorageBufferBindingSize' | 'maxBufferSize'>, maxTokens = Infinity,
): number {
  const maxBytes = Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
  const Tc = Math.min(Math.floor(maxBytes / (4 * V)), maxTokens);
  if (Tc < 1) throw new RangeError(`cross_entropy: one row of ${4 * V} bytes of logits exceeds the ${maxBytes}-byte binding limit`);
  return Tc;
}
