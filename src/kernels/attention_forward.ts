import shader from '../../shaders/attention_forward.wgsl?raw';
import { grid, params, type Binding, type Gpu } from '../gpu/runtime.ts';

/** Query rows (= threads) per workgroup. */
export const ROWS = 64;
/** The shaders' private-array capacities (MAX_KV_TILE, 4 * MAX_D4). */
const MAX_KV_TILE = 32;
const MAX_D = 256;

export interface AttentionTiles {
  /** Query rows per workgroup (forward, dq) or key rows per workgroup (dkv). */
  rows: number;
  /** Keys (forward, dq) or queries (dkv) staged per workgroup-memory tile. */
  tile: number;
}

/** Tile sizes: ROWS threads, and as many staged rows as two (tile, D) f32 arrays allow in the
 *  device's workgroup memory, at most 32 (16 at D=128 with the portable 16 KiB). Tests pass
 *  smaller tiles to exercise many tiles at tiny T. */
export function attentionTiles(gpu: Gpu, D: number, tiles?: Partial<AttentionTiles>): AttentionTiles {
  if (D % 4 !== 0 || D < 4 || D > MAX_D) throw new RangeError(`attention: head dim ${D} must be a multiple of 4 in [4, ${MAX_D}]`);
  const fit = Math.floor(gpu.limits.maxComputeWorkgroupStorageSize / (2 * D * 4));
  const tile = tiles?.tile ?? Math.min(MAX_KV_TILE, fit);
  const rows = tiles?.rows ?? ROWS;
  if (tile < 1 || tile > Math.min(MAX_KV_TILE, fit)) throw new RangeError(`attention: tile ${tile} does not fit (max ${Math.min(MAX_KV_TILE, fit)} at D=${D})`);
  if (rows < 1 || rows > gpu.limits.maxComputeInvocationsPerWorkgroup) throw new RangeError(`attention: ${rows} rows per workgroup`);
  return { rows, tile };
}

export function checkHeads(H: number, Hkv: number): void {
  if (Hkv < 1 || H % Hkv !== 0) throw new RangeError(`attention: H=${H} is not a multiple of Hkv=${Hkv}`);
}

/** The window the kernels get: 0 (full causal) when there is none or it covers every position. */
export function windowParam(window: number, positions: number): number {
  if (!Number.isInteger(window) || window < 0) throw new RangeError(`attention: sliding window ${window} must be a non-negative integer`);
  return window >= positions ? 0 : window;
}

/** The softcap the kernels get: a positive cap, or 0 for none. */
export function softcapParam(softcap: number): number {
  if (!Number.isFinite(softcap) || softcap < 0) throw new RangeError(`attention: softcap ${softcap} must be a non-negative number`);
  return softcap;
}

/** The packed-row mask's binding and flag: `positions` (B, T) u32 when given; without it the
 *  kernels still need something at that binding (layout 'auto' keeps every statically used one), so
 *  they get `placeholder`, which they never read (flag 0). */
export function maskBinding(positions: Binding | undefined, placeholder: Binding): { pos: Binding; packed: number } {
  return positions ? { pos: positions, packed: 1 } : { pos: placeholder, packed: 0 };
}

/**
 * Causal GQA attention: o = softmax(q kᵀ · scale + causal mask) v, saving lse for the backward pass.
 * q, o: (B, T, H, D); k, v: (B, T, Hkv, D); lse: (B, H, T). scale defaults to 1/sqrt(D). With
 * window W > 0, query t sees keys t - W < j <= t (sliding-window attention); 0 = full causal.
 * With `positions` (B, T) u32 (packed rows, positions restarting at 0 at each example), query t
 * also sees no key before t - positions[t]: each example attends only to itself. With softcap c > 0
 * each score s becomes c·tanh(s / c) before the softmax (Gemma 2's attention softcap).
 */
export function attentionForward(
  gpu: Gpu, o: Binding, lse: Binding, q: Binding, k: Binding, v: Binding,
  B: number, T: number, H: number, Hkv: number, D: number, scale = 1 / Math.sqrt(D), tiles?: Partial<AttentionTiles>, window = 0,
  positions?: Binding, softcap = 0,
): void {
  checkHeads(H, Hkv);
  const { rows, tile } = attentionTiles(gpu, D, tiles);
  const kern = gpu.kernel('attention_forward', shader, { overrides: { ROWS: rows, KV_TILE: tile, D } });
  const { pos, packed } = maskBinding(positions, q);
  gpu.dispatch(kern, [o, lse, q, k, v, pos], params([B, T, H, Hkv, windowParam(window, T), packed], [scale, softcapParam(softcap)]), grid(B * H * Math.ceil(T / rows)));
}
