import shader from '../../shaders/rmsnorm_backward.wgsl?raw';
import { grid, params, type Binding, type Gpu } from '../gpu/runtime.ts';
import { reductionKernel } from './subgroups.ts';

const WG = 128;

/** dx (=|+=) d/dx of RMSNorm given dy, x, w and the saved rstd. */
export function rmsnormBackward(
  gpu: Gpu, dx: Binding, dy: Binding, x: Binding, w: Binding, rstd: Binding, N: number, C: number, accumulate = false,
): void {
  const k = reductionKernel(gpu, 'rmsnorm_backward', shader, { overrides: { WG, ACCUMULATE: accumulate } });
  gpu.dispatch(k, [dx, dy, x, w, rstd], params([N, C]), grid(N));
}
