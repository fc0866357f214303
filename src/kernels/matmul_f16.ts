import shader from '../../shaders/matmul_f16.wgsl?raw';
import { grid, type Binding, type Gpu } from '../gpu/runtime.ts';
import { GpuFeatureMissingError } from '../errors.ts';
import { matmul, matmulLaunch, type MatmulOptions } from './matmul.ts';

/**
 * c (=|+=) alpha · op(a) · op(b) with a and b stored as f16 (an `array<f16>`, 2 bytes per element),
 * f32 accumulation, f32 c. Shapes and options as matmul(). Throws GpuFeatureMissingError unless the
 * device has shader-f16.
 */
export function matmulF16(
  gpu: Gpu, c: Binding, a: Binding, b: Binding, M: number, N: number, K: number, opts: MatmulOptions = {},
): void {
  if (!gpu.features.f16) throw new GpuFeatureMissingError('matmul_f16', 'shader-f16');
  const { overrides, uniform, workgroups } = matmulLaunch('matmul_f16', c, a, b, M, N, K, opts);
  if (workgroups === 0) return;
  const k = gpu.kernel('matmul_f16', shader, { overrides });
  gpu.dispatch(k, [c, a, b], uniform, grid(workgroups));
}

export type MatmulStorage = 'f16' | 'f32';

/**
 * The storage policy for dense matmul operands: f16 where the device has shader-f16 (half the
 * memory and traffic, same f32 accumulation), else f32. Decide it once, when a and b are
 * allocated, and pass the answer to matmulAuto with them.
 */
export function matmulStorage(gpu: Gpu): MatmulStorage {
  return gpu.features.f16 ? 'f16' : 'f32';
}

/** Run the kernel that matches how a and b are stored (see matmulStorage). */
export function matmulAuto(
  gpu: Gpu, storage: MatmulStorage, c: Binding, a: Binding, b: Binding, M: number, N: number, K: number,
  opts: MatmulOptions = {},
): void {
  if (storage === 'f16') matmulF16(gpu, c, a, b, M, N, K, opts);
  else matmul(gpu, c, a, b, M, N, K, opts);
}
