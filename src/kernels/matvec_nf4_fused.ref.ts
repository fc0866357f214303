// CPU twin of shaders/matvec_nf4_fused.wgsl, built from the twins of the kernels it fuses: three
// matvec_nf4 products (qkv), or RMSNorm, two matvec_nf4 products and SwiGLU (swiglu).
import { matvecNf4Ref, type MatvecNf4Options } from './matvec_nf4.ref.ts';
import { rmsnormForwardRef } from './rmsnorm_forward.ref.ts';
import { swigluForwardRef } from './swiglu_forward.ref.ts';

export type MatvecNf4FusedOptions = Omit<MatvecNf4Options, 'accumulate'>;

/** One NF4 linear of a fused call: its output, packed codes and absmax; `accumulate`: Y +=. */
export interface Nf4Part<B = import('../gpu/runtime.ts').Binding> {
  Y: B;
  Wq: B;
  absmax: B;
  N: number;
  accumulate?: boolean;
}

type CpuPart = { Y: Float32Array; Wq: Uint32Array; absmax: Float32Array | Uint32Array; N: number; accumulate?: boolean };

export function matvecNf4QkvRef(X: Float32Array, parts: CpuPart[], M: number, K: number, opts: MatvecNf4FusedOptions = {}): void {
  for (const p of parts) matvecNf4Ref(p.Y, X, p.Wq, p.absmax, undefined, M, p.N, K, { ...opts, accumulate: p.accumulate });
}

export function matvecNf4SwigluRef(
  Y: Float32Array, X: Float32Array, gate: Omit<CpuPart, 'Y' | 'N'>, up: Omit<CpuPart, 'Y' | 'N'>, M: number, F: number, K: number,
  norm: { w: Float32Array; eps: number } | undefined, opts: MatvecNf4FusedOptions = {},
): void {
  let x = X;
  if (norm) {
    x = new Float32Array(M * K);
    rmsnormForwardRef(x, new Float32Array(M), X, norm.w, M, K, norm.eps);
  }
  const g = new Float32Array(M * F), u = new Float32Array(M * F);
  matvecNf4Ref(g, x, gate.Wq, gate.absmax, undefined, M, F, K, opts);
  matvecNf4Ref(u, x, up.Wq, up.absmax, undefined, M, F, K, opts);
  swigluForwardRef(Y, g, u, M, F);
}
