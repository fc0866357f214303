import shader from '../../shaders/matvec_nf4_fused.wgsl?raw';
import { grid, params, type Binding, type Gpu } from '../gpu/runtime.ts';
import { matvecLanes } from './matvec.ts';
import { reductionKernel } from './subgroups.ts';
import { MATVEC_NF4_MAX_M } from './matvec_nf4.ts';
import { checkOutputs } from './matmul_nf4_fused.ts';
import { NF4_BLOCKSIZE } from '../quant/nf4.ts';
import type { Nf4Part, MatvecNf4FusedOptions } from './matvec_nf4_fused.ref.ts';

export type { Nf4Part, MatvecNf4FusedOptions } from './matvec_nf4_fused.ref.ts';

// As matvec_nf4.ts: 256 invocations in GROUPS groups of WG_K lanes; qkv gives each group COLS = 2
// columns of one linear, swiglu one column (its gate and up sums).
const WG = 256, COLS = 2;
/** Storage buffers the `qkv` entry binds (three outputs, x, three code and three absmax buffers). */
export const QKV_STORAGE_BUFFERS = 10;

const bufferOf = (b: Binding) => ('tensor' in b ? b.tensor.buffer : b.buffer);

function checks(name: string, M: number, K: number, BS: number, parts: { N: number }[]): { vec4: boolean; WG_K: number; GROUPS: number } {
  if (!Number.isInteger(M) || M < 1 || M > MATVEC_NF4_MAX_M) throw new RangeError(`${name}: M = ${M}, expected 1 to ${MATVEC_NF4_MAX_M} rows`);
  for (const { N } of parts) if (N * K > 0xffffffff) throw new RangeError(`${name}: ${N * K} weights overflow the kernel's u32 indices`);
  const vec4 = K > 0 && K % 32 === 0 && BS % 32 === 0;
  const WG_K = matvecLanes(vec4 ? K / 32 : K);
  return { vec4, WG_K, GROUPS: WG / WG_K };
}

/** Entry, overrides, uniform and workgroups of one qkv call (the test checks the split with these). */
export function qkvLaunch(M: number, K: number, parts: [Nf4Part, Nf4Part, Nf4Part], opts: MatvecNf4FusedOptions = {}) {
  const BS = opts.blocksize ?? NF4_BLOCKSIZE;
  const { vec4, WG_K, GROUPS } = checks('matvec_nf4_fused qkv', M, K, BS, parts);
  const wgs = parts.map((p) => Math.ceil(p.N / (GROUPS * COLS)));
  const ACC = parts.reduce((a, p, j) => a | (p.accumulate ? 1 << j : 0), 0);
  return {
    entry: vec4 ? 'qkv' : 'qkv_scalar',
    overrides: { WG_K, GROUPS, ACC, BS, DQ: opts.doubleQuant ?? false },
    uniform: params([M, K, parts[0].N, parts[1].N, parts[2].N, wgs[0], wgs[1]], [0]),
    workgroups: wgs[0] + wgs[1] + wgs[2],
  };
}

/**
 * Y_j (M, N_j) (=|+= when parts[j].accumulate) X (M, K) · dequant(W_j)ᵀ for three NF4 linears that
 * share X (q, k, v), M = 1..4 rows, no bias, in one dispatch. Bit-identical to three matvecNf4 calls.
 */
export function matvecNf4Qkv(gpu: Gpu, X: Binding, parts: [Nf4Part, Nf4Part, Nf4Part], M: number, K: number, opts: MatvecNf4FusedOptions = {}): void {
  const { entry, overrides, uniform, workgroups } = qkvLaunch(M, K, parts, opts);
  checkOutputs('matvec_nf4_fused qkv', parts.map((p) => p.Y), [X, ...parts.flatMap((p) => [p.Wq, p.absmax])]);
  if (workgroups === 0) return;
  const k = reductionKernel(gpu, 'matvec_nf4_fused', shader, { entry, overrides });
  gpu.dispatch(k, [parts[0].Y, parts[1].Y, parts[2].Y, X, parts[0].Wq, parts[1].Wq, parts[2].Wq, parts[0].absmax, parts[1].absmax, parts[2].absmax], uniform, grid(workgroups));
}

/** Entry, overrides, uniform and workgroups of one swiglu call. */
export function swigluLaunch(M: number, F: number, K: number, norm: { eps: number } | undefined, opts: MatvecNf4FusedOptions = {}) {
  const BS = opts.blocksize ?? NF4_BLOCKSIZE;
  const { vec4, WG_K, GROUPS } = checks('matvec_nf4_fused swiglu', M, K, BS, [{ N: F }]);
  return {
    entry: vec4 ? 'swiglu' : 'swiglu_scalar',
    overrides: { WG_K, GROUPS, NORM: norm !== undefined, BS, DQ: opts.doubleQuant ?? false },
    uniform: params([M, K, F, 0, 0, 0, 0], [norm?.eps ?? 0]),
    workgroups: Math.ceil(F / GROUPS),
  };
}

/**
 * Y (M, F) = silu(X'·dequant(Wg)ᵀ) · (X'·dequant(Wu)ᵀ), M = 1..4, in one dispatch; X' = X, or with
 * `norm` the RMSNorm of X with weight norm.w (K) and norm.eps (g and u are not stored: decoding).
 * Bit-identical to [rmsnormForward,] two matvecNf4 calls and swigluForward.
 */
export function matvecNf4Swiglu(
  gpu: Gpu, Y: Binding, X: Binding, gate: Pick<Nf4Part, 'Wq' | 'absmax'>, up: Pick<Nf4Part, 'Wq' | 'absmax'>, M: number, F: number, K: number,
  norm: { w: Binding; eps: number } | undefined, opts: MatvecNf4FusedOptions = {},
): void {
  const { entry, overrides, uniform, workgroups } = swigluLaunch(M, F, K, norm, opts);
  if ([X, gate.Wq, gate.absmax, up.Wq, up.absmax, norm?.w].some((b) => b !== undefined && bufferOf(b) === bufferOf(Y))) {
    throw new RangeError('matvec_nf4_fused swiglu: Y must not share a buffer with an input');
  }
  if (workgroups === 0) return;
  const k = reductionKernel(gpu, 'matvec_nf4_fused', shader, { entry, overrides });
  // Without a norm its weight binding is statically used but never read: X stands in.
  gpu.dispatch(k, [Y, undefined, undefined, X, gate.Wq, up.Wq, undefined, gate.absmax, up.absmax, undefined, norm?.w ?? X], uniform, grid(workgroups));
}
