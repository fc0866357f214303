// cos/sin tables for the RoPE kernels' tests and benches. The kernels only apply tables, so any
// smooth frequencies exercise them; transformers' inv_freq for each rope type is computed and
// proven bit-exact in src/model/rope.ts and its test.
import { ropeTables } from '../kernels/rope_forward.ts';

/** Tables (P, D/2) over the plain geometric frequencies theta^(-2j/D). */
export function plainRopeTables(D: number, theta: number, P: number): { cos: Float32Array; sin: Float32Array } {
  return ropeTables(Float32Array.from({ length: D / 2 }, (_, j) => theta ** ((-2 * j) / D)), P);
}
