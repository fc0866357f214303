import shader from '../../shaders/lora_backward.wgsl?raw';
import { grid, params, type Binding, type Gpu } from '../gpu/runtime.ts';
import { dropoutUniforms, loraBindings, NARROW, SQUARE, type LoraDims, type LoraOptions } from './lora_forward.ts';

/** Workgroups below which a rank-R product is split along its reduction (split-K): about twice the
 *  compute units of a large GPU (an H100 has 132 SMs), so that every core has work and latency is
 *  hidden by a second resident workgroup. */
export const SPLIT_TARGET = 256;

/** How one product's reduction of `length` is cut: `slices` of `chunk` each (whole BK chunks). */
export interface Split {
  slices: number;
  chunk: number;
}

/** The split of a product with `tileCount` output tiles: none when the tiles already fill the GPU,
 *  else enough slices to reach SPLIT_TARGET workgroups, each at least one BK chunk long. */
export function splitK(tileCount: number, length: number, bk: number): Split {
  const chunks = Math.max(1, Math.ceil(length / bk));
  if (tileCount >= SPLIT_TARGET) return { slices: 1, chunk: chunks * bk };
  const want = Math.min(Math.ceil(SPLIT_TARGET / tileCount), chunks);
  const chunk = Math.ceil(chunks / want) * bk;
  return { slices: Math.ceil(length / chunk) || 1, chunk };
}

/** The splits of dU (reduction over N), dB and dA (over M), and the layout of the scratch `work`
 *  (floats): dU at 0, region 1 (dU partials, then dA partials) at off1, dB partials at off2. */
export function loraSplits(d: LoraDims): { U: Split; B: Split; A: Split; off1: number; off2: number; floats: number } {
  const U = splitK(tileCount(d.M, d.R), d.N, NARROW.BK);
  const B = splitK(tileCount(d.N, d.R), d.M, NARROW.BK);
  const A = splitK(tileCount(d.K, d.R), d.M, NARROW.BK);
  const part = (s: Split, n: number) => (s.slices > 1 ? s.slices * n : 0);
  const off1 = d.M * d.R;
  const off2 = off1 + Math.max(part(U, d.M * d.R), part(A, d.R * d.K));
  return { U, B, A, off1, off2, floats: off2 + part(B, d.N * d.R) };
}

/** Bytes of the scratch `work` that loraBackward needs for these dims (the memory plan sizes
 *  grad.dU with the largest over the adapted projections). */
export function loraBackwardScratchBytes(d: LoraDims): number {
  return loraSplits(d).floats * 4;
}

/** Output tiles of a (rows, cols) result under tile shape t (TM = TN = 4 outputs per thread, consts
 *  of the shader). */
function tileCount(rows: number, cols: number, t: { WX: number; WY: number } = NARROW): number {
  return Math.ceil(rows / (t.WY * 4)) * Math.ceil(cols / (t.WX * 4));
}

/**
 * Gradients of Y = base(x) + scale · B(A(dropout(x))) given dY (M, N) and the forward's U (M, R):
 * dX (M, K) += the LoRA branch's input gradient (dX must hold the base layer's), dA (R, K) and
 * dB (N, R) are written, or added to with `accumulate` (micro-batches). `work` is scratch of
 * loraBackwardScratchBytes(d) bytes; it holds dU (M, R) in its first M·R floats afterwards.
 * Pass the forward's scale, dropout and seed: the mask is regenerated, not stored.
 */
export function loraBackward(
  gpu: Gpu, dX: Binding, dA: Binding, dB: Binding, work: Binding, dY: Binding, x: Binding, A: Binding, B: Binding,
  U: Binding, d: LoraDims, o: LoraOptions & { accumulate?: boolean },
): void {
  const { seeds } = loraBindings(gpu, d, o);
  const sp = loraSplits(d);
  if (work.size < sp.floats * 4) {
    throw new RangeError(`lora_backward: scratch holds ${work.size} bytes, the split needs ${sp.floats * 4}`);
  }
  const { keepThreshold, invKeep } = dropoutUniforms(o.dropout ?? 0);
  const seedIndex = o.seeds?.index ?? 0;
  const u = params(
    [d.M, d.N, d.K, d.R, seedIndex, keepThreshold, sp.U.slices, sp.U.chunk, sp.B.slices, sp.B.chunk, sp.A.slices,
      sp.A.chunk, sp.off1, sp.off2],
    [invKeep, o.scale],
  );
  const ACCUMULATE = o.accumulate ?? false;
  const _ = undefined;
  const wgs = (n: number, t: { WX: number; WY: number }) => Math.ceil(n / (t.WX * t.WY));
  // dU first: dA and dX read it (dispatches in one pass see each other's writes). dB's dispatch adds
  // up dU's partials, dX's those of dB and dA (see the shader's header).
  const kU = gpu.kernel('lora_backward', shader, { entry: 'dU_main', overrides: NARROW });
  gpu.dispatch(kU, [_, _, _, work, dY, _, _, B], u, grid(tileCount(d.M, d.R) * sp.U.slices));
  const kB = gpu.kernel('lora_backward', shader, { entry: 'dB_main', overrides: { ...NARROW, ACCUMULATE } });
  const reduceU = sp.U.slices > 1 ? wgs(d.M * d.R, NARROW) : 0;
  gpu.dispatch(kB, [_, _, dB, work, dY, _, _, _, U], u, grid(tileCount(d.N, d.R) * sp.B.slices + reduceU));
  const kA = gpu.kernel('lora_backward', shader, { entry: 'dA_main', overrides: { ...NARROW, ACCUMULATE } });
  gpu.dispatch(kA, [_, dA, _, work, _, x, _, _, _, seeds], u, grid(tileCount(d.K, d.R) * sp.A.slices));
  const kX = gpu.kernel('lora_backward', shader, { entry: 'dX_main', overrides: { ...SQUARE, ACCUMULATE } });
  const reduceBA = wgs((sp.B.slices > 1 ? d.N * d.R : 0) + (sp.A.slices > 1 ? d.R * d.K : 0), SQUARE);
  gpu.dispatch(kX, [dX, dA, dB, work, _, _, A, _, _, seeds], u, grid(tileCount(d.M, d.K, SQUARE) + reduceBA));
}
