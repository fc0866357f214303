import shader from '../../shaders/matmul_nf4_backward.wgsl?raw';
import { grid, params, type Binding, type Gpu } from '../gpu/runtime.ts';
import { NF4_BLOCKSIZE } from '../quant/nf4.ts';
import { ACT_CODE, type GluAct } from './swiglu_forward.ts';
import { checkOutputs } from './matmul_nf4_fused.ts';
import { nf4KStep, type NF4KStep } from './matmul_nf4.ts';

const TM = 64, TK = 64;
/** Storage buffers the `group` entry binds (dX, three dY, three code and three absmax buffers): a
 *  device with fewer per stage takes one dispatch per linear. */
export const GROUP_STORAGE_BUFFERS = 10;

export interface Nf4BackwardOptions {
  accumulate?: boolean;
  blocksize?: number;
  doubleQuant?: boolean;
  /** false: take the bounds-checked form even where the shape fits the tiles (tests compare the two). */
  fit?: boolean;
  /** Rows of W per reduction step (16 or 32); default: nf4KStep's choice for the device (tests run both). */
  nStep?: NF4KStep;
}

/** The shapes the backward runs without bounds checks: whole 64×64 dX tiles, whole N steps. */
export const nf4BackwardFits = (M: number, K: number, Ns: number[], nStep: NF4KStep): boolean =>
  M % TM === 0 && K % TK === 0 && Ns.every((n) => n % nStep === 0);

/** One frozen NF4 linear of a group and the gradient of its output. */
export interface Nf4GradPart {
  dY: Binding;
  Wq: Binding;
  absmax: Binding;
  N: number;
}

// Ns: the reduction lengths (the parts' N) the bounds-free form needs whole steps of.
function overrides(gpu: Gpu, opts: Nf4BackwardOptions, M: number, K: number, Ns: number[], glu = 0) {
  const bs = opts.blocksize ?? NF4_BLOCKSIZE;
  // The shader decodes 4 aligned codes with one block scale.
  if (bs % 4 !== 0) throw new RangeError(`matmul_nf4_backward: blocksize ${bs} is not a multiple of 4`);
  // Two staged tiles (dY and the W patch), as matmul_nf4's X and W.
  const tn = nf4KStep(gpu, 2, 'matmul_nf4_backward', opts.nStep);
  return {
    ACCUMULATE: opts.accumulate ?? false, BS: bs, DQ: opts.doubleQuant ?? false, GLU: glu,
    FIT: (opts.fit ?? true) && nf4BackwardFits(M, K, Ns, tn), TN: tn,
  };
}

/** dX (M, K) (=|+=) dY (M, N) · dequant(W), W (N, K) NF4-packed (`Wq` u32 words + f32 absmax, or
 *  double-quantized absmax words with opts.doubleQuant). */
export function matmulNf4Backward(
  gpu: Gpu, dX: Binding, dY: Binding, Wq: Binding, absmax: Binding,
  M: number, N: number, K: number, opts: Nf4BackwardOptions = {},
): void {
  const k = gpu.kernel('matmul_nf4_backward', shader, { overrides: overrides(gpu, opts, M, K, [N]) });
  const tiles = Math.ceil(M / TM) * Math.ceil(K / TK);
  gpu.dispatch(k, [dX, dY, Wq, absmax], params([M, N, K, 0, 0]), grid(tiles));
}

/**
 * dX (M, K) (=|+=) Σ_j dY_j · dequant(W_j) over two or three NF4 linears sharing their input (the
 * backward of q/k/v, of gate/up), in one dispatch. Bit-identical to one matmulNf4Backward per part
 * in part order, the first with opts.accumulate and the others accumulating.
 */
export function matmulNf4BackwardGroup(gpu: Gpu, dX: Binding, parts: Nf4GradPart[], M: number, K: number, opts: Nf4BackwardOptions = {}): void {
  if (parts.length < 2 || parts.length > 3) throw new RangeError(`matmul_nf4_backward group: ${parts.length} parts; it takes 2 or 3`);
  checkOutputs('matmul_nf4_backward group', [dX], parts.flatMap((q) => [q.dY, q.Wq, q.absmax]));
  const [a, b, c = { ...b, N: 0 }] = parts;
  const k = gpu.kernel('matmul_nf4_backward', shader, { entry: 'group', overrides: overrides(gpu, opts, M, K, [a.N, b.N, c.N]) });
  gpu.dispatch(k, [dX, a.dY, a.Wq, a.absmax, b.dY, c.dY, b.Wq, c.Wq, b.absmax, c.absmax],
    params([M, a.N, K, b.N, c.N]), grid(Math.ceil(M / TM) * Math.ceil(K / TK)));
}

/**
 * The gated MLP's input gradient without adapters on gate or up: dX (M, K) (=|+=) du · dequant(Wu)
 * + dg · dequant(Wg), du and dg of m = act(g)·u formed from dm, g, u (M, F) inside the dispatch and
 * never stored. Bit-identical to swigluBackward and two matmulNf4Backward calls (up, then gate).
 */
export function matmulNf4BackwardGlu(
  gpu: Gpu, dX: Binding, dm: Binding, g: Binding, u: Binding, up: Pick<Nf4GradPart, 'Wq' | 'absmax'>, gate: Pick<Nf4GradPart, 'Wq' | 'absmax'>,
  M: number, F: number, K: number, opts: Nf4BackwardOptions & { act?: GluAct } = {},
): void {
  checkOutputs('matmul_nf4_backward glu', [dX], [dm, g, u, up.Wq, up.absmax, gate.Wq, gate.absmax]);
  const glu = 1 + ACT_CODE[opts.act ?? 'silu'];
  const k = gpu.kernel('matmul_nf4_backward', shader, { entry: 'group', overrides: overrides(gpu, opts, M, K, [F], glu) });
  // Part 2 is absent (N2 = 0): its bindings repeat gate's.
  gpu.dispatch(k, [dX, dm, up.Wq, up.absmax, g, u, gate.Wq, gate.Wq, gate.absmax, gate.absmax],
    params([M, F, K, F, 0]), grid(Math.ceil(M / TM) * Math.ceil(K / TK)));
}
