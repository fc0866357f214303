import shader from '../../shaders/nf4_quantize.wgsl?raw';
import { grid, params, type Binding, type Gpu } from '../gpu/runtime.ts';
import { NF4_BLOCKSIZE } from '../quant/nf4.ts';

/**
 * NF4-quantize n f32 values (a weight (N, K) flattened) exactly as bitsandbytes does:
 * packed gets ceil(n / 8) little-endian u32 words, absmax ceil(n / blocksize) f32.
 */
export function nf4Quantize(gpu: Gpu, packed: Binding, absmax: Binding, w: Binding, n: number, blocksize = NF4_BLOCKSIZE): void {
  // One invocation per u32 word (8 codes): a block is blocksize / 8 invocations. bitsandbytes
  // blocksizes are powers of two from 32; the workgroup must hold at least one block (<= 256).
  const tpb = blocksize / 8;
  if (!Number.isInteger(Math.log2(blocksize)) || blocksize < 8 || tpb > 256) {
    throw new RangeError(`nf4_quantize: blocksize ${blocksize} must be a power of two from 8 to 2048`);
  }
  const WG = Math.max(64, tpb);
  const nblocks = Math.ceil(n / blocksize);
  const k = gpu.kernel('nf4_quantize', shader, { overrides: { WG, BS: blocksize } });
  gpu.dispatch(k, [packed, absmax, w], params([n, nblocks]), grid(Math.ceil(nblocks / (WG / tpb))));
}
