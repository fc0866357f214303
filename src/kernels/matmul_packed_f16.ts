import shader from '../../shaders/matmul_packed_f16.wgsl?raw';
import type { Binding, Gpu } from '../gpu/runtime.ts';
import { tiledMatmul, type MatmulGpuOptions } from './matmul.ts';

/**
 * c (=|+=) alpha · op(a) · op(b), a and c f32, b stored as f16 pairs in u32 words (packF16 in
 * matmul_packed_f16.ref.ts): f32 accumulation, no shader-f16 needed. Shapes and options as matmul();
 * M, N, K count elements, so b of (N, K) holds ceil(N·K / 2) words. Always the tiled kernel: a
 * packed-f16 matrix-vector form for decode is not written yet. Split-K as matmul() (opts.splitK).
 */
export function matmulPackedF16(
  gpu: Gpu, c: Binding, a: Binding, b: Binding, M: number, N: number, K: number, opts: MatmulGpuOptions = {},
): void {
  tiledMatmul(gpu, 'matmul_packed_f16', shader, c, a, b, M, N, K, opts);
}
