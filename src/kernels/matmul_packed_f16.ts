import shader from '../../shaders/matmul_packed_f16.wgsl?raw';
import { grid, type Binding, type Gpu } from '../gpu/runtime.ts';
import { matmulLaunch, type MatmulOptions } from './matmul.ts';

/**
 * c (=|+=) alpha · op(a) · op(b), a and c f32, b stored as f16 pairs in u32 words (packF16 in
 * matmul_packed_f16.ref.ts): f32 accumulation, no shader-f16 needed. Shapes and options as matmul();
 * M, N, K count elements, so b of (N, K) holds ceil(N·K / 2) words. Always the tiled kernel: a
 * packed-f16 matrix-vector form for decode is not written yet.
 */
export function matmulPackedF16(
  gpu: Gpu, c: Binding, a: Binding, b: Binding, M: number, N: number, K: number, opts: MatmulOptions = {},
): void {
  const { overrides, uniform, workgroups } = matmulLaunch('matmul_packed_f16', c, a, b, M, N, K, opts);
  if (workgroups === 0) return;
  const k = gpu.kernel('matmul_packed_f16', shader, { overrides });
  gpu.dispatch(k, [c, a, b], uniform, grid(workgroups));
}
