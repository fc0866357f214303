import shader from '../../shaders/matmul.wgsl?raw';
import { grid, params, type Binding, type Gpu } from '../gpu/runtime.ts';
import type { MatmulOptions } from './matmul.ref.ts';
import { MATVEC_MAX_M, matvec } from './matvec.ts';

export type { MatmulOptions } from './matmul.ref.ts';

// A portable tile (fits the 16 KiB default workgroup memory; see docs/kernels.md#dense-matmuls) at BK 16:
// 64×64 outputs per workgroup, 256 threads of 4×4,
// 8 KiB of workgroup memory. Exported so the f16 variant and the bench use the same tile.
export const MATMUL_TILE = { BM: 64, BN: 64, BK: 16 } as const;

function bufferOf(x: Binding): GPUBuffer {
  return 'tensor' in x ? x.tensor.buffer : x.buffer;
}

/** Shape bookkeeping shared by matmul and matmul_f16: defaults, checks, workgroup count, uniform. */
export function matmulLaunch(
  name: string, c: Binding, a: Binding, b: Binding, M: number, N: number, K: number, opts: MatmulOptions,
): { overrides: Record<string, number | boolean>; uniform: ArrayBuffer; workgroups: number } {
  const { transA = false, transB = false, accumulate = false, alpha = 1, batch = 1 } = opts;
  const strideA = opts.strideA ?? M * K, strideB = opts.strideB ?? K * N, strideC = opts.strideC ?? M * N;
  // WebGPU rejects a writable buffer bound twice; say which call did it instead of a validation error.
  if (bufferOf(c) === bufferOf(a) || bufferOf(c) === bufferOf(b)) {
    throw new RangeError(`${name}: c must not share a buffer with a or b (in-place matmul is not supported)`);
  }
  // The kernel indexes in u32: the last element of each operand must be addressable.
  const last = Math.max((batch - 1) * strideA + M * K, (batch - 1) * strideB + K * N, (batch - 1) * strideC + M * N);
  if (last > 0xffffffff) throw new RangeError(`${name}: ${last} elements overflow the kernel's u32 indices`);
  const { BM, BN, BK } = MATMUL_TILE;
  return {
    overrides: { BM, BN, BK, TRANS_A: transA, TRANS_B: transB, ACCUMULATE: accumulate },
    uniform: params([M, N, K, batch, strideA, strideB, strideC], [alpha]),
    workgroups: batch * Math.ceil(M / BM) * Math.ceil(N / BN),
  };
}

/**
 * c (=|+=) alpha · op(a) · op(b), f32. c: (M, N); a: (M, K), or (K, M) with transA; b: (K, N), or
 * (N, K) with transB (Y = X·Wᵀ). Optionally batched over a leading dimension with element strides.
 */
export function matmul(
  gpu: Gpu, c: Binding, a: Binding, b: Binding, M: number, N: number, K: number, opts: MatmulOptions = {},
): void {
  const { overrides, uniform, workgroups } = matmulLaunch('matmul', c, a, b, M, N, K, opts);
  if (workgroups === 0) return; // M, N or batch is 0: nothing to write (grid() would round up to 1)
  // Decode: a few token rows against an nn.Linear weight (NT, unbatched) would leave 60+ of the
  // tile's 64 rows dead; matvec reads W once with the K reduction spread over the workgroup.
  if (M <= MATVEC_MAX_M && opts.transB && !opts.transA && (opts.batch ?? 1) === 1) {
    matvec(gpu, c, a, b, M, N, K, { accumulate: opts.accumulate, alpha: opts.alpha });
    return;
  }
  const k = gpu.kernel('matmul', shader, { overrides });
  gpu.dispatch(k, [c, a, b], uniform, grid(workgroups));
}

/** matmul() without the matrix-vector route: always the tiled kernel (tests compare the two). */
export function matmulTiled(
  gpu: Gpu, c: Binding, a: Binding, b: Binding, M: number, N: number, K: number, opts: MatmulOptions = {},
): void {
  const { overrides, uniform, workgroups } = matmulLaunch('matmul', c, a, b, M, N, K, opts);
  if (workgroups === 0) return;
  const k = gpu.kernel('matmul', shader, { overrides });
  gpu.dispatch(k, [c, a, b], uniform, grid(workgroups));
}
