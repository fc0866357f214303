// What a test's kernels ask of a device, dispatch by dispatch: the kernel's name (`file.entry`),
// its pipeline key (with the overrides the host chose) and its workgroup count. For tests on the
// counting device (src/gpu/counting.ts) that check grids and pipeline choices without a GPU.
import type { Gpu } from '../gpu/runtime.ts';

export interface DispatchRecord {
  name: string;
  key: string;
  workgroups: number;
}

/** Start recording gpu's dispatches into the returned array (they still run). */
export function recordDispatches(gpu: Gpu): DispatchRecord[] {
  const seen: DispatchRecord[] = [];
  const dispatch = gpu.dispatch.bind(gpu);
  gpu.dispatch = (k, b, u, wg) => {
    seen.push({ name: k.name, key: k.key, workgroups: (wg[0] ?? 1) * (wg[1] ?? 1) * (wg[2] ?? 1) });
    dispatch(k, b, u, wg);
  };
  return seen;
}
