import shader from '../../shaders/logit_softcap.wgsl?raw';
import { grid, params, type Binding, type Gpu } from '../gpu/runtime.ts';

const WG = 256;

/** x <- cap · tanh(x / cap), in place over n floats (Gemma 2's final_logit_softcapping, inference). */
export function logitSoftcap(gpu: Gpu, x: Binding, n: number, cap: number): void {
  if (!(cap > 0) || !Number.isFinite(cap)) throw new RangeError(`logit_softcap: cap ${cap} must be a positive number`);
  const k = gpu.kernel('logit_softcap', shader, { overrides: { WG } });
  gpu.dispatch(k, [x], params([n], [cap]), grid(Math.ceil(n / WG)));
}
