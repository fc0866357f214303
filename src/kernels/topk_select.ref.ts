// CPU twin of shaders/topk_select.wgsl: the k best of a row by rank (larger value first, equal
// values the smaller id first), padded past n with -inf and id 0xffffffff as the kernel pads.

export const TOPK_NONE = 0xffffffff;

export function topkSelectRef(logits: Float32Array, k: number): { values: Float32Array; ids: Uint32Array } {
  const order = Array.from({ length: logits.length }, (_, i) => i);
  order.sort((a, b) => (logits[a] > logits[b] ? -1 : logits[a] < logits[b] ? 1 : a - b));
  const values = new Float32Array(k).fill(-Infinity);
  const ids = new Uint32Array(k).fill(TOPK_NONE);
  for (let i = 0; i < Math.min(k, order.length); i++) {
    values[i] = logits[order[i]];
    ids[i] = order[i];
  }
  return { values, ids };
}
