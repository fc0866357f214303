// CPU twin of shaders/matmul_nf4_backward.wgsl: dX (=|+=) dY · dequant(W), f64 accumulation; the
// `group` entry as one product per linear (and its GLU prologue as swiglu_backward's twin).
// Checked against PyTorch autograd (fixtures/goldens/nf4.json) and by finite differences.
import { NF4_BLOCKSIZE } from '../quant/nf4.ts';
import { nf4DequantizeRef } from './nf4_dequantize.ref.ts';
import { swigluBackwardRef } from './swiglu_backward.ref.ts';
import type { GluAct } from './swiglu_forward.ts';

export function matmulNf4BackwardRef(
  dX: Float32Array, // (M, K) out; added to when accumulate
  dY: Float32Array, // (M, N)
  Wq: Uint32Array, // (ceil(N*K / 8)) packed NF4 of W (N, K)
  absmax: Float32Array | Uint32Array, // (ceil(N*K / blocksize)) f32, or the DQ words when doubleQuant
  M: number,
  N: number,
  K: number,
  opts: { accumulate?: boolean; blocksize?: number; doubleQuant?: boolean } = {},
): void {
  const W = new Float32Array(N * K);
  nf4DequantizeRef(W, Wq, absmax, N * K, opts.blocksize ?? NF4_BLOCKSIZE, opts.doubleQuant);
  for (let m = 0; m < M; m++) {
    for (let k = 0; k < K; k++) {
      let s = 0;
      for (let n = 0; n < N; n++) s += dY[m * N + n] * W[n * K + k];
      dX[m * K + k] = opts.accumulate ? dX[m * K + k] + s : s;
    }
  }
}

type CpuGradPart = { dY: Float32Array; Wq: Uint32Array; absmax: Float32Array | Uint32Array; N: number };
type RefOptions = { accumulate?: boolean; blocksize?: number; doubleQuant?: boolean };

/** Twin of the `group` entry: one product per part, in part order, the later ones added on. */
export function matmulNf4BackwardGroupRef(dX: Float32Array, parts: CpuGradPart[], M: number, K: number, opts: RefOptions = {}): void {
  parts.forEach((q, j) => matmulNf4BackwardRef(dX, q.dY, q.Wq, q.absmax, M, q.N, K, { ...opts, accumulate: j > 0 || opts.accumulate }));
}

/** Twin of the `group` entry's GLU prologue: the gated MLP's backward, then up's and gate's products. */
export function matmulNf4BackwardGluRef(
  dX: Float32Array, dm: Float32Array, g: Float32Array, u: Float32Array, up: Omit<CpuGradPart, 'dY' | 'N'>, gate: Omit<CpuGradPart, 'dY' | 'N'>,
  M: number, F: number, K: number, opts: RefOptions & { act?: GluAct } = {},
): void {
  const dg = new Float32Array(M * F), du = new Float32Array(M * F);
  swigluBackwardRef(dg, du, dm, g, u, M, F, opts.act);
  matmulNf4BackwardGroupRef(dX, [{ ...up, dY: du, N: F }, { ...gate, dY: dg, N: F }], M, K, opts);
}
