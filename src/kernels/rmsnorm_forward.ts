import shader from '../../shaders/rmsnorm_forward.wgsl?raw';
import { grid, params, type Binding, type Gpu } from '../gpu/runtime.ts';
import { reductionKernel } from './subgroups.ts';

const WG = 128;

/** y = w * (x * rstd), saving rstd. x, y: (N, C); w: (C); rstd: (N). With `copyTo` (N, C), the
 *  same dispatch also copies x there (the start of a residual sum, without a pass-ending copy). */
export function rmsnormForward(gpu: Gpu, y: Binding, rstd: Binding, x: Binding, w: Binding, N: number, C: number, eps: number, copyTo?: Binding): void {
  const k = reductionKernel(gpu, 'rmsnorm_forward', shader, { entry: copyTo ? 'copy' : 'main', overrides: { WG } });
  gpu.dispatch(k, [y, rstd, x, w, copyTo], params([N, C], [eps]), grid(N));
}

/** y += w * (x * rstd), saving rstd: a sublayer's output normed straight into the residual stream
 *  y (Gemma 2/3's post-attention and post-feedforward norms). y must not alias x. */
export function rmsnormForwardAdd(gpu: Gpu, y: Binding, rstd: Binding, x: Binding, w: Binding, N: number, C: number, eps: number): void {
  const k = reductionKernel(gpu, 'rmsnorm_forward', shader, { entry: 'add', overrides: { WG } });
  gpu.dispatch(k, [y, rstd, x, w], params([N, C], [eps]), grid(N));
}
