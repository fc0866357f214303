import shader from '../../shaders/matmul_nf4_backward.wgsl?raw';
import { grid, params, type Binding, type Gpu } from '../gpu/runtime.ts';
import { NF4_BLOCKSIZE } from '../quant/nf4.ts';

const TM = 64, TK = 64;

/** dX (M, K) (=|+=) dY (M, N) · dequant(W), W (N, K) NF4-packed (`Wq` u32 words + f32 absmax, or
 *  double-quantized absmax words with opts.doubleQuant). */
export function matmulNf4Backward(
  gpu: Gpu, dX: Binding, dY: Binding, Wq: Binding, absmax: Binding,
  M: number, N: number, K: number, opts: { accumulate?: boolean; blocksize?: number; doubleQuant?: boolean } = {},
): void {
  const k = gpu.kernel('matmul_nf4_backward', shader, {
    overrides: { ACCUMULATE: opts.accumulate ?? false, BS: opts.blocksize ?? NF4_BLOCKSIZE, DQ: opts.doubleQuant ?? false },
  });
  const tiles = Math.ceil(M / TM) * Math.ceil(K / TK);
  gpu.dispatch(k, [dX, dY, Wq, absmax], params([M, N, K]), grid(tiles));
}
