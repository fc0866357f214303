import shader from '../../shaders/matvec.wgsl?raw';
import { grid, params, type Binding, type Gpu } from '../gpu/runtime.ts';
import type { MatvecOptions } from './matvec.ref.ts';
import { reductionKernel } from './subgroups.ts';

export type { MatvecOptions } from './matvec.ref.ts';

/** Most rows of x one dispatch takes (MR in the WGSL); matmul() routes M <= this here. */
export const MATVEC_MAX_M = 4;
// 256 invocations per workgroup, split into GROUPS groups of WG_K lanes; each group computes COLS
// (a WGSL const: it sizes register arrays) output columns. WG_K is the number of K steps of a row
// (vec4s or scalars) rounded up to a power of two in [8, 64], so a short row does not leave most lanes
// idle: K = 2048 gives 64 lanes, 4 groups, 8 columns per workgroup (256 workgroups at N = 2048), while
// K = 64 gives 16 lanes, 16 groups, 32 columns. Each WG_K is its own pipeline (at most four).
const WG = 256, COLS = 2;

/** Lanes per column group for a row of `steps` loads. */
export function matvecLanes(steps: number): number {
  let lanes = 8;
  while (lanes < 64 && lanes < steps) lanes *= 2;
  return lanes;
}

function bufferOf(x: Binding): GPUBuffer {
  return 'tensor' in x ? x.tensor.buffer : x.buffer;
}

/** Checks, entry point, overrides, uniform and workgroup count of one matvec call (the test splits
 *  the grid by hand with these). */
export function matvecLaunch(
  y: Binding, x: Binding, W: Binding, M: number, N: number, K: number, opts: MatvecOptions = {},
): { entry: string; overrides: Record<string, number | boolean>; uniform: ArrayBuffer; workgroups: number; columns: number } {
  const { accumulate = false, alpha = 1 } = opts;
  if (!Number.isInteger(M) || M < 1 || M > MATVEC_MAX_M) throw new RangeError(`matvec: M = ${M}, expected 1 to ${MATVEC_MAX_M} rows`);
  if (bufferOf(y) === bufferOf(x) || bufferOf(y) === bufferOf(W)) {
    throw new RangeError('matvec: y must not share a buffer with x or W');
  }
  if (N * K > 0xffffffff) throw new RangeError(`matvec: ${N * K} weights overflow the kernel's u32 indices`);
  // vec4 loads need every row on a 16-byte boundary; K = 0 stays scalar because an empty x would be
  // smaller than one vec4, the minimum binding size of an array<vec4<f32>>.
  const vec4 = K > 0 && K % 4 === 0;
  const WG_K = matvecLanes(vec4 ? K / 4 : K), GROUPS = WG / WG_K, columns = GROUPS * COLS;
  return {
    entry: vec4 ? 'main' : 'main_scalar',
    overrides: { WG_K, GROUPS, ACCUMULATE: accumulate },
    uniform: params([M, N, K], [alpha]),
    workgroups: Math.ceil(N / columns),
    columns,
  };
}

/**
 * y (M, N) (=|+=) alpha · x (M, K) · Wᵀ for M = 1..4 rows, W (N, K) f32 (nn.Linear layout).
 * The decode path of matmul(); call matmul() unless you need this kernel specifically.
 */
export function matvec(
  gpu: Gpu, y: Binding, x: Binding, W: Binding, M: number, N: number, K: number, opts: MatvecOptions = {},
): void {
  const { entry, overrides, uniform, workgroups } = matvecLaunch(y, x, W, M, N, K, opts);
  if (workgroups === 0) return; // N = 0: nothing to write (grid() would round up to 1)
  const k = reductionKernel(gpu, 'matvec', shader, { entry, overrides });
  gpu.dispatch(k, [y, x, W], uniform, grid(workgroups));
}
