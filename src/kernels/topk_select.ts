import shader from '../../shaders/topk_select.wgsl?raw';
import { params, type Binding, type Gpu, type Tensor } from '../gpu/runtime.ts';

/** Entries one workgroup sorts (shaders/topk_select.wgsl). */
export const TOPK_CHUNK = 2048;
/** The most pairs one selection returns: each merge stage then divides the candidates by 8. */
export const TOPK_MAX = 256;

/** Workgroups of each dispatch selecting the top k of n: the first stage over the row, then merges
 *  of the stage before's outputs (groups · k pairs) until one group is left. */
export function topkStages(n: number, k: number): number[] {
  const stages = [Math.max(1, Math.ceil(n / TOPK_CHUNK))];
  while (stages[stages.length - 1] > 1) stages.push(Math.ceil((stages[stages.length - 1] * k) / TOPK_CHUNK));
  return stages;
}

/** Bytes of each of the two ping-pong buffers a selection of up to kMax over n entries needs. */
export function topkScratchBytes(n: number, kMax = TOPK_MAX): number {
  return Math.max(1, Math.ceil(n / TOPK_CHUNK)) * kMax * 8;
}

/**
 * The top k (1 <= k <= TOPK_MAX) of the n f32 values in `logits`, best first (larger value, then
 * smaller id), as k (value bits, id) u32 pairs at the start of the returned buffer, one of `scratch`.
 * When n < k the pairs past n hold -inf with id 0xffffffff. Records 1 to 4 dispatches, no readback.
 */
export function topkSelect(gpu: Gpu, scratch: [Tensor, Tensor], logits: Binding, n: number, k: number): Tensor {
  if (!(Number.isInteger(k) && k >= 1 && k <= TOPK_MAX)) throw new RangeError(`topk_select: k = ${k}, want 1 to ${TOPK_MAX}`);
  if (!(Number.isInteger(n) && n >= 1)) throw new RangeError(`topk_select: n = ${n}`);
  const stages = topkStages(n, k);
  const need = stages[0] * k * 8;
  for (const t of scratch) if (t.size < need) throw new RangeError(`topk_select: ${t.label} holds ${t.size} bytes, ${need} needed`);
  let src: Binding = logits, count = n, dst = 0;
  stages.forEach((groups, s) => {
    const k2 = gpu.kernel('topk_select', shader, { entry: s === 0 ? 'first' : 'merge' });
    gpu.dispatch(k2, [scratch[dst], src], params([count, k, 0xff800000]), [groups]);
    src = scratch[dst];
    count = groups * k;
    dst ^= 1;
  });
  return scratch[dst ^ 1];
}

/** Splits the kernel's output words, (value bits, id) pairs, into values and ids. */
export function splitPairs(words: Uint32Array, k: number): { values: Float32Array; ids: Uint32Array } {
  const bits = new Uint32Array(k), ids = new Uint32Array(k);
  for (let i = 0; i < k; i++) {
    bits[i] = words[2 * i];
    ids[i] = words[2 * i + 1];
  }
  return { values: new Float32Array(bits.buffer), ids };
}
