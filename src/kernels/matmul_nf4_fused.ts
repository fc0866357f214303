import shader from '../../shaders/matmul_nf4_fused.wgsl?raw';
import { grid, params, type Binding, type Gpu } from '../gpu/runtime.ts';
import { NF4_BLOCKSIZE } from '../quant/nf4.ts';
import type { MatvecNf4FusedOptions, Nf4Part } from './matvec_nf4_fused.ref.ts';
import { nf4KStep, type NF4KStep } from './matmul_nf4.ts';

export type MatmulNf4FusedOptions = MatvecNf4FusedOptions & {
  /** The K step (16 or 32); default: nf4KStep's choice for the device (tests run both). */
  kStep?: NF4KStep;
};

const TM = 64, TN = 64;
/** Storage buffers the `qkv` entry binds (three outputs, X, three code and three absmax buffers). */
export const QKV_TILED_STORAGE_BUFFERS = 10;

const bufferOf = (b: Binding) => ('tensor' in b ? b.tensor.buffer : b.buffer);

// tiles: the f32 tiles the entry stages per K step (qkv: X and W; gateup: X, gate and up).
function overrides(gpu: Gpu, opts: MatmulNf4FusedOptions, tiles: number) {
  const bs = opts.blocksize ?? NF4_BLOCKSIZE;
  // The shader decodes 4 aligned codes with one block scale.
  if (bs % 4 !== 0) throw new RangeError(`matmul_nf4_fused: blocksize ${bs} is not a multiple of 4`);
  return { BS: bs, DQ: opts.doubleQuant ?? false, TK: nf4KStep(gpu, tiles, 'matmul_nf4_fused', opts.kStep) };
}

// The outputs may be disjoint views of one buffer (writable bindings may share a buffer when their
// ranges do not overlap) but no output buffer may also be read (WebGPU forbids a buffer bound both
// writable and read-only in one dispatch).
export function checkOutputs(name: string, outs: Binding[], ins: Binding[]): void {
  const range = (b: Binding) => ('tensor' in b ? [b.offset, b.offset + b.size] : [0, b.size]);
  const inBufs = ins.map(bufferOf);
  outs.forEach((a, i) => {
    if (inBufs.includes(bufferOf(a))) throw new RangeError(`${name}: output ${i} shares a buffer with an input`);
    outs.slice(i + 1).forEach((b) => {
      const [a0, a1] = range(a), [b0, b1] = range(b);
      if (bufferOf(a) === bufferOf(b) && a0 < b1 && b0 < a1) throw new RangeError(`${name}: two outputs overlap`);
    });
  });
}

/** Tiles of each linear of a qkv call (the test checks the dealing with these). */
export function qkvTiles(M: number, Ns: number[]): number[] {
  return Ns.map((N) => Math.ceil(M / TM) * Math.ceil(N / TN));
}

/**
 * Y_j (M, N_j) = X (M, K) · dequant(W_j)ᵀ for three NF4 linears sharing X (q, k, v), no bias, no
 * accumulate, in one dispatch of matmul_nf4's tiled kernel. Bit-identical to three matmulNf4Tiled calls.
 */
export function matmulNf4Qkv(gpu: Gpu, X: Binding, parts: [Nf4Part, Nf4Part, Nf4Part], M: number, K: number, opts: MatmulNf4FusedOptions = {}): void {
  if (parts.some((p) => p.accumulate)) throw new RangeError('matmul_nf4_fused qkv: outputs are written, not accumulated');
  checkOutputs('matmul_nf4_fused qkv', parts.map((p) => p.Y), [X, ...parts.flatMap((p) => [p.Wq, p.absmax])]);
  const t = qkvTiles(M, parts.map((p) => p.N)), total = t[0] + t[1] + t[2];
  if (total === 0) return;
  const k = gpu.kernel('matmul_nf4_fused', shader, { entry: 'qkv', overrides: overrides(gpu, opts, 2) });
  gpu.dispatch(k, [parts[0].Y, parts[1].Y, parts[2].Y, X, parts[0].Wq, parts[1].Wq, parts[2].Wq, parts[0].absmax, parts[1].absmax, parts[2].absmax],
    params([M, K, parts[0].N, parts[1].N, parts[2].N, t[0], t[1]]), grid(total));
}

/**
 * G = X·dequant(Wg)ᵀ, U = X·dequant(Wu)ᵀ (M, F) and Mo = silu(G)·U, all three stored, in one
 * dispatch. Bit-identical to two matmulNf4Tiled calls and swigluForward.
 */
export function matmulNf4GateUp(
  gpu: Gpu, G: Binding, U: Binding, Mo: Binding, X: Binding, gate: Pick<Nf4Part, 'Wq' | 'absmax'>, up: Pick<Nf4Part, 'Wq' | 'absmax'>,
  M: number, F: number, K: number, opts: MatmulNf4FusedOptions = {},
): void {
  checkOutputs('matmul_nf4_fused gateup', [G, U, Mo], [X, gate.Wq, gate.absmax, up.Wq, up.absmax]);
  const tiles = Math.ceil(M / TM) * Math.ceil(F / TN);
  if (tiles === 0) return;
  const k = gpu.kernel('matmul_nf4_fused', shader, { entry: 'gateup', overrides: overrides(gpu, opts, 3) });
  gpu.dispatch(k, [G, U, Mo, X, gate.Wq, up.Wq, undefined, gate.absmax, up.absmax], params([M, K, F, 0, 0, 0, 0]), grid(tiles));
}
