// Comparison helpers for kernel tests (llm.c's validate_result): the tolerance scales with the
// reference's magnitude, and a failure names the first mismatches with index, got, expected, tol.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { rng } from '../rng.ts';
import type { Batch } from '../model/llama.ts';

export interface Tolerance {
  /** Absolute floor. */
  atol: number;
  /** Relative part, times |expected|. */
  rtol: number;
}

/** Returns a report of mismatches (empty when all agree). tol_i = atol + rtol * |expected_i|. */
export function mismatches(got: ArrayLike<number>, expected: ArrayLike<number>, tol: Tolerance, limit = 5): string[] {
  const out: string[] = [];
  if (got.length !== expected.length) return [`length: got ${got.length}, expected ${expected.length}`];
  let count = 0;
  for (let i = 0; i < got.length; i++) {
    const e = expected[i];
    const g = got[i];
    const t = tol.atol + tol.rtol * Math.abs(e);
    const bad = Number.isNaN(e) ? !Number.isNaN(g) : !(Math.abs(g - e) <= t);
    if (bad) {
      if (count < limit) out.push(`[${i}] got ${g}, expected ${e}, tolerance ${t.toExponential(2)}`);
      count++;
    }
  }
  if (count > limit) out.push(`... and ${count - limit} more of ${got.length}`);
  return out;
}

/** Throw with a readable report unless every element agrees within tolerance. */
export function assertClose(name: string, got: ArrayLike<number>, expected: ArrayLike<number>, tol: Tolerance): void {
  const bad = mismatches(got, expected, tol);
  if (bad.length) throw new Error(`${name}: ${bad.length} mismatch line(s)\n  ${bad.join('\n  ')}`);
}

/** Bit-for-bit equality of integer arrays (NF4 codes, packed bytes). */
export function assertEqualInts(name: string, got: ArrayLike<number>, expected: ArrayLike<number>): void {
  assertClose(name, got, expected, { atol: 0, rtol: 0 });
}

/** Seeded uniform floats in [lo, hi): the same seed gives the same test inputs everywhere. */
export function rand(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => lo + (hi - lo) * r());
}

/** Seeded integers in [0, n). */
export function randInts(count: number, n: number, seed: number): Uint32Array {
  const r = rand(count, seed, 0, 1);
  return Uint32Array.from(r, (u) => Math.min(n - 1, Math.floor(u * n)));
}

export interface GoldenTensor {
  shape: number[];
  data: number[];
}

/** A golden file written by scripts/goldens/*.py: { case: { tensor: {shape, data} | number } }. */
export function loadGolden(name: string): Record<string, Record<string, GoldenTensor | number>> {
  const url = new URL(`../../fixtures/goldens/${name}.json`, import.meta.url);
  return JSON.parse(readFileSync(fileURLToPath(url), 'utf8'));
}

/** A golden's named tensors (e.g. a whole adapter) as f32 arrays by name. */
export function tensorMap(g: Record<string, GoldenTensor>): Map<string, Float32Array> {
  return new Map(Object.entries(g).map(([k, v]) => [k, Float32Array.from(v.data)]));
}

export function goldenArray(t: GoldenTensor | number | undefined, what = 'tensor'): Float32Array {
  if (t === undefined || typeof t === 'number') throw new Error(`golden ${what} is missing or not a tensor`);
  return Float32Array.from(t.data);
}

/**
 * Central finite-difference check of a backward twin: for a scalar loss L(x) = sum(f(x) * g), the
 * analytic dx from the twin must match (L(x+h e_i) - L(x-h e_i)) / 2h on a few coordinates.
 * Runs in float64 so the check itself is not the source of error.
 */
export function finiteDifference(
  loss: (x: Float64Array) => number,
  x: Float64Array,
  analytic: ArrayLike<number>,
  indices: number[],
  h = 1e-4,
): string[] {
  const out: string[] = [];
  for (const i of indices) {
    const save = x[i];
    x[i] = save + h;
    const lp = loss(x);
    x[i] = save - h;
    const lm = loss(x);
    x[i] = save;
    const num = (lp - lm) / (2 * h);
    const tol = 1e-5 + 1e-4 * Math.abs(num);
    if (!(Math.abs(num - analytic[i]) <= tol)) out.push(`[${i}] analytic ${analytic[i]}, numeric ${num}, tolerance ${tol.toExponential(2)}`);
  }
  return out;
}

/** Rows [r0, r1) of a golden's (rows, T) ids/labels as a Batch with next-token targets (the last
 *  position of each row has none). */
export function goldenBatch(ids: GoldenTensor, labels: GoldenTensor, r0: number, r1: number): Batch {
  const T = ids.shape[1], B = r1 - r0;
  const b: Batch = { B, T, ids: new Uint32Array(B * T), positions: new Uint32Array(B * T), targets: new Int32Array(B * T) };
  for (let i = 0; i < B; i++) {
    for (let t = 0; t < T; t++) {
      const src = (r0 + i) * T + t;
      b.ids[i * T + t] = ids.data[src];
      b.positions[i * T + t] = t;
      b.targets[i * T + t] = t + 1 < T ? labels.data[src + 1] : -100;
    }
  }
  return b;
}
