// Kernels with a subgroup path (src/kernels/subgroups.ts) are tested on both paths: the device as
// acquired (SwiftShader, like current desktop GPUs, has `subgroups`) and the same kind of device
// told it has no subgroups, as an adapter without the feature would be.
import { afterAll, beforeAll, expect } from 'vitest';
import { assertClose, type Tolerance } from './compare.ts';
import { acquireDevice } from '../gpu/device.ts';
import { Gpu } from '../gpu/runtime.ts';
import { useSubgroups } from '../kernels/subgroups.ts';

export const REDUCTION_PATHS = ['subgroups', 'workgroup'] as const;
export type ReductionPath = (typeof REDUCTION_PATHS)[number];

/** A device whose kernels take `path`; throws if this machine's adapter cannot give the subgroup
 *  path, so a run never silently tests the fallback twice. */
export async function gpuForPath(path: ReductionPath): Promise<Gpu> {
  const acq = await acquireDevice();
  const gpu = new Gpu(path === 'subgroups' ? acq : { ...acq, features: { ...acq.features, subgroups: false } });
  if (useSubgroups(gpu) !== (path === 'subgroups')) {
    gpu.destroy();
    throw new Error(`this adapter (${acq.adapterInfo.description || acq.adapterInfo.vendor}) cannot run the ${path} path: no 'subgroups' feature`);
  }
  return gpu;
}

/** One device per path for a test file's tests: registers the file's beforeAll/afterAll (call it
 *  at the top of the file or of a describe); the record is filled before the first test runs. */
export function devicesPerPath(): Record<ReductionPath, Gpu> {
  const onPath = {} as Record<ReductionPath, Gpu>;
  beforeAll(async () => {
    for (const path of REDUCTION_PATHS) onPath[path] = await gpuForPath(path);
  });
  afterAll(() => {
    for (const g of Object.values(onPath)) g.destroy();
  });
  return onPath;
}

/**
 * The checks of a kernel with a subgroup pre-sum (override SG_REDUCE, src/kernels/matvec.wgsl):
 * `run(gpu, extraOverrides)` dispatches it and reads its output. The subgroup path's fallback
 * branch (SG_REDUCE = false, what a device whose subgroups do not tile the workgroup takes) equals
 * the portable path bit for bit; the pre-summed output matches `want` within `tol` and differs from
 * the portable one somewhere (another association of the same f32 sums: equal everywhere only if
 * the pre-sum never ran).
 */
export async function expectPresumPaths(
  onPath: Record<ReductionPath, Gpu>, run: (gpu: Gpu, extra: Record<string, boolean>) => Promise<Float32Array>,
  want: Float32Array, tol: Tolerance,
): Promise<void> {
  const portable = await run(onPath.workgroup, {});
  expect(await run(onPath.subgroups, { SG_REDUCE: false })).toEqual(portable);
  const presum = await run(onPath.subgroups, {});
  assertClose('pre-summed output', presum, want, tol);
  expect(presum.some((v, i) => v !== portable[i])).toBe(true);
}
