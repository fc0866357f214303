import shader from '../../shaders/swiglu_forward.wgsl?raw';
import { grid, params, type Binding, type Gpu } from '../gpu/runtime.ts';

const WG = 256;

/** The gated MLP's activation: SiLU (SwiGLU: Llama, Mistral, Qwen) or GELU with the tanh
 *  approximation (GeGLU: Gemma's gelu_pytorch_tanh). */
export type GluAct = 'silu' | 'gelu_tanh';

export const ACT_CODE: Readonly<Record<GluAct, number>> = { silu: 0, gelu_tanh: 1 };

/** h = act(g) * u. h, g, u: (N, F). */
export function swigluForward(gpu: Gpu, h: Binding, g: Binding, u: Binding, N: number, F: number, act: GluAct = 'silu'): void {
  const k = gpu.kernel('swiglu_forward', shader, { overrides: { WG, ACT: ACT_CODE[act] } });
  gpu.dispatch(k, [h, g, u], params([N, F]), grid(Math.ceil((N * F) / WG)));
}
