// Kernels with a subgroup path (src/kernels/subgroups.ts) are tested on both paths: the device as
// acquired (SwiftShader, like current desktop GPUs, has `subgroups`) and the same kind of device
// told it has no subgroups, as an adapter without the feature would be.
import { afterAll, beforeAll } from 'vitest';
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
