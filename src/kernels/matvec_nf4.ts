import shader from '../../shaders/matvec_nf4.wgsl?raw';
import { grid, params, type Binding, type Gpu } from '../gpu/runtime.ts';
import { matvecLanes } from './matvec.ts';
import { reductionKernel } from './subgroups.ts';
import { NF4_BLOCKSIZE } from '../quant/nf4.ts';
import type { MatvecNf4Options } from './matvec_nf4.ref.ts';

export type { MatvecNf4Options } from './matvec_nf4.ref.ts';

/** Most rows of X one dispatch takes (MR in the WGSL); matmulNf4() routes M <= this here. */
export const MATVEC_NF4_MAX_M = 4;
// 256 invocations per workgroup in GROUPS groups of WG_K lanes, COLS (a WGSL const) columns per
// group; WG_K follows the row length as in matvec (a power of two in [8, 64], no more lanes than
// loads per row): K = 2048 on the vec4 path is 64 chunks of 32 codes, so 64 lanes each reading one
// vec4<u32> per column and 8 columns per workgroup.
const WG = 256, COLS = 2;

/** Checks, entry point, overrides, uniform and workgroup count of one call (the test splits the
 *  grid by hand with these). */
export function matvecNf4Launch(
  M: number, N: number, K: number, hasBias: boolean, opts: MatvecNf4Options = {},
): { entry: string; overrides: Record<string, number | boolean>; uniform: ArrayBuffer; workgroups: number; columns: number } {
  const BS = opts.blocksize ?? NF4_BLOCKSIZE;
  if (!Number.isInteger(M) || M < 1 || M > MATVEC_NF4_MAX_M) {
    throw new RangeError(`matvec_nf4: M = ${M}, expected 1 to ${MATVEC_NF4_MAX_M} rows`);
  }
  if (N * K > 0xffffffff) throw new RangeError(`matvec_nf4: ${N * K} weights overflow the kernel's u32 indices`);
  // vec4<u32> code loads need every W row to start on a 32-code boundary, and 32 codes must share
  // one absmax (blocks are BS-aligned along the flat index, so BS % 32 == 0 suffices).
  const vec4 = K > 0 && K % 32 === 0 && BS % 32 === 0;
  const WG_K = matvecLanes(vec4 ? K / 32 : K), GROUPS = WG / WG_K, columns = GROUPS * COLS;
  return {
    entry: vec4 ? 'main' : 'main_scalar',
    overrides: { WG_K, GROUPS, ACCUMULATE: opts.accumulate ?? false, HAS_BIAS: hasBias, BS, DQ: opts.doubleQuant ?? false },
    uniform: params([M, N, K]),
    workgroups: Math.ceil(N / columns),
    columns,
  };
}

/**
 * Y (M, N) (=|+=) X (M, K) · dequant(W)ᵀ (+ bias (N)) for M = 1..4 rows, W (N, K) NF4-packed
 * (`Wq` u32 words + f32 absmax). The decode path of matmulNf4(); call that unless you need this
 * kernel specifically. Pass `bias` undefined for a Linear without bias.
 */
export function matvecNf4(
  gpu: Gpu, Y: Binding, X: Binding, Wq: Binding, absmax: Binding, bias: Binding | undefined,
  M: number, N: number, K: number, opts: MatvecNf4Options = {},
): void {
  const { entry, overrides, uniform, workgroups } = matvecNf4Launch(M, N, K, bias !== undefined, opts);
  // WebGPU rejects a writable buffer bound twice; say which call did it instead of a validation error.
  const buf = (b: Binding) => ('tensor' in b ? b.tensor.buffer : b.buffer);
  if ([X, Wq, absmax, bias].some((b) => b !== undefined && buf(b) === buf(Y))) {
    throw new RangeError('matvec_nf4: Y must not share a buffer with an input');
  }
  if (workgroups === 0) return; // N = 0: nothing to write
  const k = reductionKernel(gpu, 'matvec_nf4', shader, { entry, overrides });
  // As in matmul_nf4: `bias` is statically used, so without one absmax stands in at binding 5
  // (read-only aliases are legal; the HAS_BIAS = false pipeline never reads it).
  gpu.dispatch(k, [Y, X, Wq, absmax, bias ?? absmax], uniform, grid(workgroups));
}
