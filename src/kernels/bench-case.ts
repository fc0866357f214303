// What a kernel family contributes to `npm run bench`: a list of cases, each able to allocate its
// inputs and record one run. src/node/bench.ts times them and prints JSON.
import type { Gpu } from '../gpu/runtime.ts';

export interface BenchCase {
  /** Shader stem, e.g. 'matmul_nf4'. */
  kernel: string;
  /** Named dimensions, in the project's shape letters (M, N, K, B, T, C, H, D, V, R ...). */
  shape: Record<string, number>;
  /** Floating-point operations of one run (0 when the kernel is bandwidth-bound and FLOPs mean nothing). */
  flops: number;
  /** Minimum bytes one run must move to and from memory. */
  bytes: number;
  /** Allocate inputs; return a function that records one run (no sync, no readback). */
  setup(gpu: Gpu): () => void;
}

/** Each family exports `benches(full)`: full = real model shapes (a real GPU), else tiny (SwiftShader). */
export type BenchFamily = (full: boolean) => BenchCase[];
