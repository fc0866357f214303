import shader from '../../shaders/attention_backward.wgsl?raw';
import { grid, params, type Binding, type Gpu } from '../gpu/runtime.ts';
import { attentionTiles, checkHeads, softcapParam, windowParam, type AttentionTiles } from './attention_forward.ts';

/**
 * Backward of causal GQA attention from the saved o and lse: dq (B, T, H, D), dk and dv (B, T, Hkv, D),
 * given dO, q, o (B, T, H, D), k, v (B, T, Hkv, D) and lse (B, H, T). Dsum (B, H, T) is caller-owned
 * scratch (rowsum(dO ⊙ o)), so a training step allocates nothing here. Three dispatches: preprocess,
 * dq (parallel over query blocks), dk/dv (parallel over key blocks, each summing its group's heads).
 * window: the forward's sliding window (0 = full causal); softcap: its score softcap (0 = none).
 */
export function attentionBackward(
  gpu: Gpu, dq: Binding, dk: Binding, dv: Binding, dO: Binding, q: Binding, k: Binding, v: Binding, o: Binding,
  lse: Binding, Dsum: Binding, B: number, T: number, H: number, Hkv: number, D: number, scale = 1 / Math.sqrt(D),
  tiles?: Partial<AttentionTiles>, window = 0, softcap = 0,
): void {
  checkHeads(H, Hkv);
  const { rows, tile } = attentionTiles(gpu, D, tiles);
  const overrides = { ROWS: rows, TILE: tile, D };
  const u = params([B, T, H, Hkv, windowParam(window, T)], [scale, softcapParam(softcap)]);
  const pre = gpu.kernel('attention_backward', shader, { entry: 'preprocess', overrides });
  const dqK = gpu.kernel('attention_backward', shader, { entry: 'dq_main', overrides });
  const dkvK = gpu.kernel('attention_backward', shader, { entry: 'dkv_main', overrides });
  // Bindings 1..10: dq, dk, dv, dO, q, k, v, o, lse, Dsum; each entry point gets only what it uses.
  const _ = undefined;
  gpu.dispatch(pre, [_, _, _, dO, _, _, _, o, _, Dsum], u, grid(Math.ceil((B * H * T) / rows)));
  gpu.dispatch(dqK, [dq, _, _, dO, q, k, v, _, lse, Dsum], u, grid(B * H * Math.ceil(T / rows)));
  gpu.dispatch(dkvK, [_, dk, dv, dO, q, k, v, _, lse, Dsum], u, grid(B * Hkv * Math.ceil(T / rows)));
}
