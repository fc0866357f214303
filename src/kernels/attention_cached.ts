import shader from '../../shaders/attention_cached.wgsl?raw';
import { grid, params, type Binding, type Gpu } from '../gpu/runtime.ts';
import { checkHeads, softcapParam, windowParam } from './attention_forward.ts';

/** Threads per workgroup (= keys per tile). */
export const THREADS = 64;
const MAX_D = 256;

/**
 * Causal GQA attention of Tn new query rows (positions pos0 .. pos0+Tn-1) against a KV cache whose
 * rows 0 .. pos0+Tn-1 are filled: key j is visible to query i iff j <= pos0 + i. Batch 1.
 * o, q: (Tn, H, D); k, v: (P, Hkv, D) with P >= pos0 + Tn. scale defaults to 1/sqrt(D).
 * `threads` (a power of two >= D/4) is for tests that want many key tiles at tiny P. With window
 * W > 0, query i sees keys pos0 + i - W < j <= pos0 + i (0 = full causal); with softcap c > 0 each
 * score s is c·tanh(s / c) before the softmax.
 */
export function attentionCached(
  gpu: Gpu, o: Binding, q: Binding, k: Binding, v: Binding,
  Tn: number, pos0: number, H: number, Hkv: number, D: number, scale = 1 / Math.sqrt(D), threads = THREADS, window = 0, softcap = 0,
): void {
  checkHeads(H, Hkv);
  if (D % 4 !== 0 || D < 4 || D > MAX_D) throw new RangeError(`attention_cached: head dim ${D} must be a multiple of 4 in [4, ${MAX_D}]`);
  if (threads < D / 4 || threads > gpu.limits.maxComputeInvocationsPerWorkgroup) {
    throw new RangeError(`attention_cached: ${threads} threads per workgroup, need at least D/4 = ${D / 4}`);
  }
  const need = (pos0 + Tn) * Hkv * D * 4;
  if (k.size < need || v.size < need) {
    throw new RangeError(`attention_cached: the cache holds ${Math.min(k.size, v.size)} bytes, positions up to ${pos0 + Tn} need ${need}`);
  }
  if (q.size < Tn * H * D * 4 || o.size < Tn * H * D * 4) throw new RangeError(`attention_cached: q or o is smaller than (${Tn}, ${H}, ${D})`);
  const kern = gpu.kernel('attention_cached', shader, { overrides: { WG: threads, D } });
  // pos0 moves with every decoded token: a persistent uniform rewritten in place (all layers of one
  // token share it) instead of a new uniform buffer and bind group per token. One per window size, so
  // a model mixing full and sliding layers does not rewrite it (and flush) between its layers.
  const label = `attention_cached.params${window > 0 ? `.w${window}` : ''}${softcap > 0 ? `.c${softcap}` : ''}`;
  gpu.dispatch(kern, [o, q, k, v], gpu.scalars(label, params([Tn, H, Hkv, pos0, windowParam(window, pos0 + Tn)], [scale, softcapParam(softcap)])), grid(Tn * H));
}
