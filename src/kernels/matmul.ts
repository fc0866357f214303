import matmulShader from '../../shaders/matmul.wgsl?raw';
import { grid, params, type Binding, type Gpu } from '../gpu/runtime.ts';
import type { MatmulOptions } from './matmul.ref.ts';
import { MATVEC_MAX_M, matvec } from './matvec.ts';
import { SPLIT_TARGET, type Split } from './lora_backward.ts';

export type { MatmulOptions } from './matmul.ref.ts';

/** matmul()'s options on the GPU: the twin's, and scratch for split-K. */
export interface MatmulGpuOptions extends MatmulOptions {
  /** Scratch for split-K: an unbatched product with few output tiles and a long reduction then
   *  runs in slices (see matmulSplit), as many as the scratch holds (M·N floats each; all of them
   *  with matmulSplitBytes(M, N, K) bytes). Without it, or with room for one, never split. */
  splitK?: Binding;
}

// A portable tile (fits the 16 KiB default workgroup memory; see docs/kernels.md#dense-matmuls) at BK 16:
// 64×64 outputs per workgroup, 256 threads of 4×4,
// 8 KiB of workgroup memory. Exported so the f16 variant and the bench use the same tile.
export const MATMUL_TILE = { BM: 64, BN: 64, BK: 16 } as const;

function bufferOf(x: Binding): GPUBuffer {
  return 'tensor' in x ? x.tensor.buffer : x.buffer;
}

/** Shortest slice of a split reduction: below it the partial products' extra traffic (M·N floats
 *  written and read again per slice) stops being small next to the slice's own work. */
export const SPLIT_MIN = 256;

/**
 * How an unbatched product's K is cut for split-K: none when its output tiles reach SPLIT_TARGET
 * workgroups (about two per core of a large GPU) or K is short, else enough slices of whole BK
 * steps, each at least SPLIT_MIN long, to approach SPLIT_TARGET. The case it exists for is the LM
 * head's input gradient: a loss chunk of 128 tokens × hidden 2048 is 64 tiles, each reducing over
 * the 128,256-long vocabulary, which would leave half of an H100's 132 SMs idle. At most
 * `maxSlices` slices (the scratch's room).
 */
export function matmulSplit(M: number, N: number, K: number, maxSlices = Infinity): Split {
  const { BM, BN, BK } = MATMUL_TILE;
  const tiles = Math.ceil(M / BM) * Math.ceil(N / BN);
  const most = Math.min(Math.floor(K / SPLIT_MIN), maxSlices);
  if (tiles >= SPLIT_TARGET || most < 2) return { slices: 1, chunk: K };
  const want = Math.min(Math.ceil(SPLIT_TARGET / tiles), most);
  const chunk = Math.ceil(K / want / BK) * BK;
  return { slices: Math.ceil(K / chunk), chunk };
}

/** Scratch bytes a split-K matmul of this shape needs (0 when it does not split). */
export function matmulSplitBytes(M: number, N: number, K: number): number {
  const { slices } = matmulSplit(M, N, K);
  return slices > 1 ? slices * M * N * 4 : 0;
}

/** Shape bookkeeping shared by matmul and matmul_f16: defaults, checks, workgroup count, uniform
 *  (kSlice: split-K's slice length, 0 for none). */
export function matmulLaunch(
  name: string, c: Binding, a: Binding, b: Binding, M: number, N: number, K: number, opts: MatmulOptions, kSlice = 0,
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
    uniform: matmulParams([M, N, K, batch, strideA, strideB, strideC], alpha, kSlice),
    workgroups: batch * Math.ceil(M / BM) * Math.ceil(N / BN),
  };
}

// The shaders' Params: seven u32, alpha (f32), kSlice (u32).
function matmulParams(u: number[], alpha: number, kSlice: number): ArrayBuffer {
  const buf = params([...u, 0, kSlice]);
  new Float32Array(buf)[u.length] = alpha;
  return buf;
}

const sizeOf = (x: Binding): number => ('size' in x ? x.size : 0);

/**
 * The tiled product, split-K when opts.splitK is given and matmulSplit cuts K: the slices' partial
 * products go to the scratch (slice s at s·M·N) in one dispatch of slices × tiles workgroups, and a
 * second dispatch (matmul.wgsl `sum_slices`) adds them into c with alpha and accumulate. Shared by
 * matmul and matmul_packed_f16 (`shader` is the one whose `main` computes the slices).
 */
export function tiledMatmul(
  gpu: Gpu, name: string, shader: string, c: Binding, a: Binding, b: Binding, M: number, N: number, K: number, opts: MatmulGpuOptions,
): void {
  const room = opts.splitK && M * N > 0 ? Math.floor(sizeOf(opts.splitK) / (M * N * 4)) : 0;
  const split = opts.splitK && (opts.batch ?? 1) === 1 ? matmulSplit(M, N, K, room) : { slices: 1, chunk: K };
  if (split.slices <= 1 || !opts.splitK) {
    const { overrides, uniform, workgroups } = matmulLaunch(name, c, a, b, M, N, K, opts);
    if (workgroups === 0) return; // M, N or batch is 0: nothing to write (grid() would round up to 1)
    gpu.dispatch(gpu.kernel(name, shader, { overrides }), [c, a, b], uniform, grid(workgroups));
    return;
  }
  const scratch = opts.splitK, S = split.slices;
  const parts = matmulLaunch(name, scratch, a, b, M, N, K, {
    transA: opts.transA, transB: opts.transB, batch: S, strideA: 0, strideB: 0, strideC: M * N,
  }, split.chunk);
  gpu.dispatch(gpu.kernel(name, shader, { overrides: parts.overrides }), [scratch, a, b], parts.uniform, grid(parts.workgroups));
  const sum = gpu.kernel('matmul', matmulShader, { entry: 'sum_slices', overrides: { ACCUMULATE: opts.accumulate ?? false } });
  gpu.dispatch(sum, [c, scratch], matmulParams([M, N, K, S, M * N, 0, 0], opts.alpha ?? 1, 0), grid(Math.ceil((M * N) / 256)));
}

/**
 * c (=|+=) alpha · op(a) · op(b), f32. c: (M, N); a: (M, K), or (K, M) with transA; b: (K, N), or
 * (N, K) with transB (Y = X·Wᵀ). Optionally batched over a leading dimension with element strides.
 */
export function matmul(
  gpu: Gpu, c: Binding, a: Binding, b: Binding, M: number, N: number, K: number, opts: MatmulGpuOptions = {},
): void {
  const { workgroups } = matmulLaunch('matmul', c, a, b, M, N, K, opts);
  if (workgroups === 0) return; // M, N or batch is 0: nothing to write (grid() would round up to 1)
  // Decode: a few token rows against an nn.Linear weight (NT, unbatched) would leave 60+ of the
  // tile's 64 rows dead; matvec reads W once with the K reduction spread over the workgroup.
  if (M <= MATVEC_MAX_M && opts.transB && !opts.transA && (opts.batch ?? 1) === 1) {
    matvec(gpu, c, a, b, M, N, K, { accumulate: opts.accumulate, alpha: opts.alpha });
    return;
  }
  tiledMatmul(gpu, 'matmul', matmulShader, c, a, b, M, N, K, opts);
}

/** matmul() without the matrix-vector route: always the tiled kernel (tests compare the two). */
export function matmulTiled(
  gpu: Gpu, c: Binding, a: Binding, b: Binding, M: number, N: number, K: number, opts: MatmulGpuOptions = {},
): void {
  tiledMatmul(gpu, 'matmul', matmulShader, c, a, b, M, N, K, opts);
}
