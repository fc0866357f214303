import shader from '../../shaders/grad_norm.wgsl?raw';
import { grid, params, type Binding, type Gpu } from '../gpu/runtime.ts';
import { reductionKernel } from './subgroups.ts';

const WG = 256;
const ITEMS = 16;

/** Number of f32 partial sums (the size of the `partials` scratch buffer) for n gradients. */
export function gradNormPartials(n: number): number {
  return Math.max(1, Math.ceil(n / (WG * ITEMS)));
}

/**
 * norm (2) = [sum(grad²), ‖grad‖₂] over the first n elements of the flat gradient buffer, without a
 * readback. partials: scratch of gradNormPartials(n) f32.
 */
export function gradNorm(gpu: Gpu, norm: Binding, partials: Binding, grad: Binding, n: number): void {
  const P = gradNormPartials(n);
  if (partials.size < P * 4) throw new RangeError(`grad_norm: partials holds ${partials.size / 4} f32, needs ${P}`);
  const u = params([n, P]);
  const kp = reductionKernel(gpu, 'grad_norm', shader, { entry: 'partial_sums', overrides: { WG, ITEMS } });
  gpu.dispatch(kp, [undefined, partials, grad], u, grid(P));
  const kf = reductionKernel(gpu, 'grad_norm', shader, { entry: 'finish', overrides: { WG, ITEMS } });
  gpu.dispatch(kf, [norm, partials], u, [1]);
}
