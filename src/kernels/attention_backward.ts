import shader from '../../shaders/attention_backward.wgsl?raw';
import { grid, params, type Binding, type Gpu } from '../gpu/runtime.ts';
import { attentionTiles, checkHeads, maskBinding, softcapParam, windowParam, type AttentionTiles } from './attention_forward.ts';

/** dkv_main's blocking: `keys` rows per workgroup (KB), `queries` rows per staged tile (QB), and
 *  `threads` per key row (KT, each owning at most 4 vec4 of the row's dk and dv). */
export interface DkvTiles {
  keys: number;
  queries: number;
  threads: number;
}

/** Workgroup memory of dkv_main in bytes: the key block's k, v and the tile's q, dO (f32 rows of D),
 *  the tile's lse and Dsum, and the (keys, queries) P and dS. */
export function dkvBytes(D: number, keys: number, queries: number): number {
  return 4 * (D * (2 * keys + 2 * queries) + 2 * queries + 2 * keys * queries);
}

/** The largest blocking that fits the device: 16 key rows (256 workgroups at T = 512, Hkv = 8) and
 *  8-query tiles where the workgroup memory allows (D <= 64 in the portable 16 KiB), smaller at larger
 *  head dims. Tests pass smaller ones to get several blocks and tiles at tiny T. */
export function dkvTiles(gpu: Gpu, D: number, o?: Partial<Pick<DkvTiles, 'keys' | 'queries'>>): DkvTiles {
  const threads = Math.ceil(D / 16);
  const mem = gpu.limits.maxComputeWorkgroupStorageSize;
  const maxThreads = gpu.limits.maxComputeInvocationsPerWorkgroup;
  const fits = (kb: number, qb: number) => dkvBytes(D, kb, qb) <= mem && kb * threads <= maxThreads;
  if (o?.keys !== undefined || o?.queries !== undefined) {
    const keys = o.keys ?? 16, queries = o.queries ?? 8;
    if (keys < 1 || queries < 1 || !fits(keys, queries)) throw new RangeError(`attention_backward: dk/dv blocking ${keys} x ${queries} does not fit at D=${D}`);
    return { keys, queries, threads };
  }
  for (const keys of [16, 8, 4, 2, 1]) {
    for (const queries of [8, 4, 2, 1]) if (fits(keys, queries)) return { keys, queries, threads };
  }
  throw new RangeError(`attention_backward: head dim ${D} does not fit the device's workgroup memory`);
}

/**
 * Backward of causal GQA attention from the saved o and lse: dq (B, T, H, D), dk and dv (B, T, Hkv, D),
 * given dO, q, o (B, T, H, D), k, v (B, T, Hkv, D) and lse (B, H, T); nothing allocated. Two
 * dispatches: dq (parallel over query blocks), dk/dv (parallel over blocks of a few keys, each summing
 * its group's heads), each forming rowsum(dO ⊙ o) of the query rows it reads.
 * window: the forward's sliding window (0 = full causal); positions: the forward's packed-row
 * positions (B, T) u32, when it had them. `tiles` blocks dq, `dkv` dk/dv (dkvTiles). softcap: the
 * forward's score softcap (0 = none).
 */
export function attentionBackward(
  gpu: Gpu, dq: Binding, dk: Binding, dv: Binding, dO: Binding, q: Binding, k: Binding, v: Binding, o: Binding,
  lse: Binding, B: number, T: number, H: number, Hkv: number, D: number, scale = 1 / Math.sqrt(D),
  tiles?: Partial<AttentionTiles>, window = 0, positions?: Binding, dkv?: Partial<Pick<DkvTiles, 'keys' | 'queries'>>,
  softcap = 0,
): void {
  checkHeads(H, Hkv);
  const { rows, tile } = attentionTiles(gpu, D, tiles);
  const overrides = { ROWS: rows, TILE: tile, D };
  const { pos, packed } = maskBinding(positions, q);
  const u = params([B, T, H, Hkv, windowParam(window, T), packed], [scale, softcapParam(softcap)]);
  const dqK = gpu.kernel('attention_backward', shader, { entry: 'dq_main', overrides });
  const kv = dkvTiles(gpu, D, dkv);
  const dkvK = gpu.kernel('attention_backward', shader, {
    entry: 'dkv_main', overrides: { D, KB: kv.keys, QB: kv.queries, KT: kv.threads },
  });
  // Bindings 1..9 and 11: dq, dk, dv, dO, q, k, v, o, lse, (10 unused), positions.
  const _ = undefined;
  gpu.dispatch(dqK, [dq, _, _, dO, q, k, v, o, lse, _, pos], u, grid(B * H * Math.ceil(T / rows)));
  gpu.dispatch(dkvK, [_, dk, dv, dO, q, k, v, o, lse, _, pos], u, grid(B * Hkv * Math.ceil(T / kv.keys)));
}
