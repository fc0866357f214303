import shader from '../../shaders/lora_backward.wgsl?raw';
import { grid, type Binding, type Gpu } from '../gpu/runtime.ts';
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

/** Bytes of the scratch `work` that loraBackward needs for one adapter of these dims. */
export function loraBackwardScratchBytes(d: LoraDims): number {
  return loraSplits(d).floats * 4;
}

/** Output tiles of a (rows, cols) result under tile shape t (TM = TN = 4 outputs per thread, consts
 *  of the shader). */
function tileCount(rows: number, cols: number, t: { WX: number; WY: number } = NARROW): number {
  return Math.ceil(rows / (t.WY * 4)) * Math.ceil(cols / (t.WX * 4));
}

/** One adapter of a loraBackward call: the gradient dY (M, N) reaching its projection, the U (M, R)
 *  its forward saved, and where its A (R, K) and B (N, R) sit, in floats, in the LoRA parameter
 *  buffer (its dA and dB at the same offsets in the gradient buffer). */
export interface LoraBackwardPart {
  dY: Binding;
  U: Binding;
  N: number;
  a: number;
  b: number;
  /** Its dropout seed's index in o.seeds.table (default 0). */
  seedIndex?: number;
}

/** Workgroups of one part in each dispatch (as the shader's wgsU, wgsB, wgsA, wgsReduce). */
function partWorkgroups(d: LoraDims, sp: ReturnType<typeof loraSplits>) {
  const wgs = (n: number, t: { WX: number; WY: number }) => Math.ceil(n / (t.WX * t.WY));
  return {
    U: tileCount(d.M, d.R) * sp.U.slices,
    B: tileCount(d.N, d.R) * sp.B.slices + (sp.U.slices > 1 ? wgs(d.M * d.R, NARROW) : 0),
    A: tileCount(d.K, d.R) * sp.A.slices,
    // dX's fused reductions of the dB and dA partials.
    reduce: wgs((sp.B.slices > 1 ? d.N * d.R : 0) + (sp.A.slices > 1 ? d.R * d.K : 0), SQUARE),
  };
}

/** Bytes of the scratch `work` a loraBackward call over adapters of these output widths needs: each
 *  part's dU and split-K partials, one region after the other. */
export function loraGroupScratchBytes(M: number, K: number, R: number, Ns: number[]): number {
  return Ns.reduce((s, N) => s + loraBackwardScratchBytes({ M, N, K, R }), 0);
}

/**
 * Gradients of Y_j = base_j(x) + scale · B_j(A_j(dropout(x))) for one to three adapters whose
 * projections share x (q/k/v, gate/up), given each dY_j (M, N_j) and the U_j (M, R) its forward
 * saved: dX (M, K) += each branch's input gradient in part order (dX must hold the base layers'),
 * and each dA_j (R, K), dB_j (N_j, R) in `grads` is written, or added to with `accumulate`
 * (micro-batches). Each stage is one dispatch for all parts, bit-identical to one call per adapter.
 * `work` is scratch of loraGroupScratchBytes bytes; part j's dU (M, R) sits at the start of its
 * region afterwards (part 0's at float 0). Pass the forward's scale, dropout and seeds: the masks are
 * regenerated, not stored. Parts must not share an A or B (Phi-3's fused modules: one call each).
 */
export function loraBackward(
  gpu: Gpu, dX: Binding, grads: Binding, work: Binding, x: Binding, lora: Binding, parts: LoraBackwardPart[],
  d: { M: number; K: number; R: number }, o: LoraOptions & { accumulate?: boolean },
): void {
  if (parts.length < 1 || parts.length > 3) throw new RangeError(`lora_backward: ${parts.length} adapters; it takes 1 to 3`);
  const { seeds } = loraBindings(gpu, { ...d, N: 0 }, o);
  const { keepThreshold, invKeep } = dropoutUniforms(o.dropout ?? 0);
  const fields: number[] = [d.M, d.K, d.R, parts.length, keepThreshold, 0];
  const wg = { U: 0, B: 0, A: 0, reduce: 0 };
  let base = 0;
  for (let j = 0; j < 3; j++) {
    const q = parts[j];
    if (!q) {
      fields.push(...new Array(16).fill(0));
      continue;
    }
    const dims = { M: d.M, N: q.N, K: d.K, R: d.R };
    const sp = loraSplits(dims);
    fields.push(q.N, q.seedIndex ?? o.seeds?.index ?? 0, sp.U.slices, sp.U.chunk, sp.B.slices, sp.B.chunk, sp.A.slices, sp.A.chunk,
      base, base + sp.off1, base + sp.off2, q.a, q.b, 0, 0, 0);
    const w = partWorkgroups(dims, sp);
    wg.U += w.U;
    wg.B += w.B;
    wg.A += w.A;
    wg.reduce += w.reduce;
    base += sp.floats;
  }
  if (work.size < base * 4) throw new RangeError(`lora_backward: scratch holds ${work.size} bytes, the split needs ${base * 4}`);
  // Params: six u32, invKeep and scale (f32), then the three parts' sixteen u32 each.
  const u = new ArrayBuffer((8 + 48) * 4);
  new Uint32Array(u).set(fields.slice(0, 6));
  new Float32Array(u, 6 * 4, 2).set([invKeep, o.scale]);
  new Uint32Array(u, 8 * 4).set(fields.slice(6));
  const ACCUMULATE = o.accumulate ?? false;
  const _ = undefined;
  const [p0, p1 = p0, p2 = p1] = parts;
  const dYs = [p0.dY, p1.dY, p2.dY], Us = [p0.U, p1.U, p2.U];
  // dU first: dA and dX read it (dispatches in one pass see each other's writes). dB's dispatch adds
  // up dU's partials, dX's those of dB and dA (see the shader's header).
  const kU = gpu.kernel('lora_backward', shader, { entry: 'dU_main', overrides: NARROW });
  gpu.dispatch(kU, [_, _, work, dYs[0], _, lora, _, _, dYs[1], dYs[2]], u, grid(wg.U));
  const kB = gpu.kernel('lora_backward', shader, { entry: 'dB_main', overrides: { ...NARROW, ACCUMULATE } });
  gpu.dispatch(kB, [_, grads, work, dYs[0], _, _, Us[0], _, dYs[1], dYs[2], Us[1], Us[2]], u, grid(wg.B));
  const kA = gpu.kernel('lora_backward', shader, { entry: 'dA_main', overrides: { ...NARROW, ACCUMULATE } });
  gpu.dispatch(kA, [_, grads, work, _, x, _, _, seeds], u, grid(wg.A));
  const kX = gpu.kernel('lora_backward', shader, { entry: 'dX_main', overrides: { ...SQUARE, ACCUMULATE } });
  gpu.dispatch(kX, [dX, grads, work, _, _, lora, _, seeds], u, grid(tileCount(d.M, d.K, SQUARE) + wg.reduce));
}
