import shader from '../../shaders/nf4_dequantize.wgsl?raw';
import { grid, params, type Binding, type Gpu } from '../gpu/runtime.ts';
import { NF4_BLOCKSIZE, nf4Words } from '../quant/nf4.ts';

const WG = 128;

/** w (n) = NF4[code] * absmax[i / blocksize], from ceil(n / 8) packed u32 words and f32 absmax, or
 *  with doubleQuant the double-quantized words of src/quant/nf4.ts packDoubleQuant. */
export function nf4Dequantize(
  gpu: Gpu, w: Binding, packed: Binding, absmax: Binding, n: number, blocksize = NF4_BLOCKSIZE, doubleQuant = false,
): void {
  const k = gpu.kernel('nf4_dequantize', shader, { overrides: { WG, BS: blocksize, DQ: doubleQuant } });
  gpu.dispatch(k, [w, packed, absmax], params([n]), grid(Math.ceil(nf4Words(n) / WG)));
}
