import shader from '../../shaders/pack_f16.wgsl?raw';
import { grid, params, type Binding, type Gpu } from '../gpu/runtime.ts';

const WG = 256;

/** w = n values of x rounded to f16 (clamped to ±65504), two per u32 word. */
export function packF16Gpu(gpu: Gpu, w: Binding, x: Binding, n: number): void {
  const k = gpu.kernel('pack_f16', shader, { entry: 'pack', overrides: { WG } });
  gpu.dispatch(k, [w, x], params([n]), grid(Math.ceil(n / 2 / WG)));
}

/** y = the n f16 values packed in w, widened to f32 (exact). */
export function unpackF16Gpu(gpu: Gpu, y: Binding, w: Binding, n: number): void {
  const k = gpu.kernel('pack_f16', shader, { entry: 'unpack', overrides: { WG } });
  gpu.dispatch(k, [y, w], params([n]), grid(Math.ceil(n / 2 / WG)));
}
