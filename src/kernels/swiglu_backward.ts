import shader from '../../shaders/swiglu_backward.wgsl?raw';
import { grid, params, type Binding, type Gpu } from '../gpu/runtime.ts';
import { ACT_CODE, type GluAct } from './swiglu_forward.ts';

const WG = 256;

/** dg, du of h = act(g) * u given dh and the saved g, u. All (N, F); dg and du must not alias g or u. */
export function swigluBackward(
  gpu: Gpu, dg: Binding, du: Binding, dh: Binding, g: Binding, u: Binding, N: number, F: number, act: GluAct = 'silu',
): void {
  const k = gpu.kernel('swiglu_backward', shader, { overrides: { WG, ACT: ACT_CODE[act] } });
  gpu.dispatch(k, [dg, du, dh, g, u], params([N, F]), grid(Math.ceil((N * F) / WG)));
}
