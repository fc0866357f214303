import shader from '../../shaders/rmsnorm_forward.wgsl?raw';
import { grid, params, type Binding, type Gpu } from '../gpu/runtime.ts';

const WG = 128;

/** y = w * (x * rstd), saving rstd. x, y: (N, C); w: (C); rstd: (N). */
export function rmsnormForward(gpu: Gpu, y: Binding, rstd: Binding, x: Binding, w: Binding, N: number, C: number, eps: number): void {
  const k = gpu.kernel('rmsnorm_forward', shader, { overrides: { WG } });
  gpu.dispatch(k, [y, rstd, x, w], params([N, C], [eps]), grid(N));
}
