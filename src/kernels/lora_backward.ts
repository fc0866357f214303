import shader from '../../shaders/lora_backward.wgsl?raw';
import { type Binding, type Gpu } from '../gpu/runtime.ts';
import { loraBindings, NARROW, SQUARE, tiles, type LoraDims, type LoraOptions } from './lora_forward.ts';

/**
 * Gradients of Y = base(x) + scale · B(A(dropout(x))) given dY (M, N) and the forward's U (M, R):
 * dX (M, K) += the LoRA branch's input gradient (dX must hold the base layer's), dA (R, K) and
 * dB (N, R) are written, or added to with `accumulate` (micro-batches). dU (M, R) is scratch.
 * Pass the forward's scale, dropout and seed: the mask is regenerated, not stored.
 */
export function loraBackward(
  gpu: Gpu, dX: Binding, dA: Binding, dB: Binding, dU: Binding, dY: Binding, x: Binding, A: Binding, B: Binding,
  U: Binding, d: LoraDims, o: LoraOptions & { accumulate?: boolean },
): void {
  const { seeds, u } = loraBindings(gpu, d, o);
  const ACCUMULATE = o.accumulate ?? false;
  const _ = undefined;
  // dU first: dA and dX read it (dispatches in one pass see each other's writes).
  const kU = gpu.kernel('lora_backward', shader, { entry: 'dU_main', overrides: NARROW });
  gpu.dispatch(kU, [_, _, _, dU, dY, _, _, B], u, tiles(d.M, d.R, NARROW));
  const kB = gpu.kernel('lora_backward', shader, { entry: 'dB_main', overrides: { ...NARROW, ACCUMULATE } });
  gpu.dispatch(kB, [_, _, dB, _, dY, _, _, _, U], u, tiles(d.N, d.R, NARROW));
  const kA = gpu.kernel('lora_backward', shader, { entry: 'dA_main', overrides: { ...NARROW, ACCUMULATE } });
  gpu.dispatch(kA, [_, dA, _, dU, _, x, _, _, _, seeds], u, tiles(d.K, d.R, NARROW));
  const kX = gpu.kernel('lora_backward', shader, { entry: 'dX_main', overrides: SQUARE });
  gpu.dispatch(kX, [dX, _, _, dU, _, _, A, _, _, seeds], u, tiles(d.M, d.K, SQUARE));
}
