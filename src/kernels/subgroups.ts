// Subgroup variants of the row and block reductions (rmsnorm forward/backward, cross_entropy,
// grad_norm). Their WGSL keeps both paths in one file between `//#if subgroups`, `//#else` and
// `//#endif` lines (no nesting): the subgroup path reduces inside each subgroup with
// subgroupAdd/subgroupMax (no barrier), then adds the num_subgroups partials from workgroup memory
// after one barrier, instead of log2(WG) barrier-separated tree steps; the other path is the
// portable workgroup-memory tree, for adapters without the `subgroups` feature.
import type { Gpu } from '../gpu/runtime.ts';
import { expandIncludes } from '../gpu/wgsl-lib.ts';

/** WGSL's `subgroup_id` language feature (the subgroup_id and num_subgroups builtins, which make the
 *  partials' slots independent of how a GPU lays subgroups over the workgroup). In a page or worker
 *  navigator.gpu says; in Node the engine runs on Dawn's `webgpu` package, which has it. */
function wgslHasSubgroupId(): boolean {
  const gpuEntry = (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu;
  if (gpuEntry) return gpuEntry.wgslLanguageFeatures.has('subgroup_id');
  return typeof process !== 'undefined' && typeof process.versions?.node === 'string';
}

/** Whether kernels on this device take their subgroup path: the device has `subgroups` (requested
 *  whenever the adapter offers it) and WGSL has `subgroup_id`. */
export function useSubgroups(gpu: Gpu): boolean {
  return gpu.features.subgroups && wgslHasSubgroupId();
}

/** The shader text for one path: its `//#include` lines resolved first (shaders/lib snippets hold
 *  `//#if subgroups` blocks too; `shader` names it in include errors), then the lines of the other
 *  branch of each block dropped (replaced by empty lines, so compiler messages keep the file's line
 *  numbers; Gpu.kernel finds no include left to resolve). */
export function subgroupVariant(code: string, on: boolean, shader = 'shader'): string {
  const key = `${on ? 1 : 0}${code}`;
  let out = variants.get(key);
  if (out === undefined) {
    out = preprocess(expandIncludes(shader, code), on);
    variants.set(key, out);
  }
  return out;
}

// Per (shader, path): kernels are looked up on every dispatch, the text is cut once.
const variants = new Map<string, string>();

function preprocess(code: string, on: boolean): string {
  let keep = true;
  let inBlock = false;
  return code
    .split('\n')
    .map((line) => {
      const t = line.trim();
      if (t === '//#if subgroups') {
        if (inBlock) throw new Error('subgroupVariant: nested //#if subgroups');
        inBlock = true;
        keep = on;
        return '';
      }
      if (t === '//#else' && inBlock) {
        keep = !on;
        return '';
      }
      if (t === '//#endif' && inBlock) {
        inBlock = false;
        keep = true;
        return '';
      }
      return keep ? line : '';
    })
    .join('\n');
}

/** The kernel `entry` of `name` on the path this device takes (each path is its own module). */
export function reductionKernel(
  gpu: Gpu, name: string, code: string, opts: { entry?: string; overrides?: Record<string, number | boolean> } = {},
) {
  const on = useSubgroups(gpu);
  return gpu.kernel(on ? `${name}+subgroups` : name, subgroupVariant(code, on, name), opts);
}
