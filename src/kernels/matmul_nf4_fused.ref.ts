// CPU twin of shaders/matmul_nf4_fused.wgsl, from the twins of the kernels it fuses: three
// matmul_nf4 products (qkv); two matmul_nf4 products and SwiGLU, G and U kept (gateup).
import { matmulNf4Ref } from './matmul_nf4.ref.ts';
import { swigluForwardRef } from './swiglu_forward.ref.ts';
import type { MatvecNf4FusedOptions } from './matvec_nf4_fused.ref.ts';

type CpuLinear = { Wq: Uint32Array; absmax: Float32Array | Uint32Array };

export function matmulNf4QkvRef(X: Float32Array, parts: (CpuLinear & { Y: Float32Array; N: number })[], M: number, K: number, opts: MatvecNf4FusedOptions = {}): void {
  for (const p of parts) matmulNf4Ref(p.Y, X, p.Wq, p.absmax, undefined, M, p.N, K, opts);
}

export function matmulNf4GateUpRef(
  G: Float32Array, U: Float32Array, Mo: Float32Array, X: Float32Array, gate: CpuLinear, up: CpuLinear, M: number, F: number, K: number,
  opts: MatvecNf4FusedOptions = {},
): void {
  matmulNf4Ref(G, X, gate.Wq, gate.absmax, undefined, M, F, K, opts);
  matmulNf4Ref(U, X, up.Wq, up.absmax, undefined, M, F, K, opts);
  swigluForwardRef(Mo, G, U, M, F);
}
