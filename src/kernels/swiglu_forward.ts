import shader from '../../shaders/swiglu_forward.wgsl?raw';
import { grid, params, type Binding, type Gpu } from '../gpu/runtime.ts';

const WG = 256;

/** h = silu(g) * u. h, g, u: (N, F). */
export function swigluForward(gpu: Gpu, h: Binding, g: Binding, u: Binding, N: number, F: number): void {
  const k = gpu.kernel('swiglu_forward', shader, { overrides: { WG } });
  gpu.dispatch(k, [h, g, u], params([N, F]), grid(Math.ceil((N * F) / WG)));
}
