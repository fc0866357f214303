import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Gpu } from '../gpu/runtime.ts';
import { assertClose, finiteDifference, goldenArray, loadGolden, rand } from '../testing/compare.ts';
import { dropoutRef, loraForwardRef } from './lora_forward.ref.ts';
import { loraBackward, loraBackwardScratchBytes, loraGroupScratchBytes, loraSplits, SPLIT_TARGET, splitK } from './lora_backward.ts';
import { loraBackwardRef } from './lora_backward.ref.ts';

const TOL = { atol: 1e-5, rtol: 1e-4 };

function concat(...parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, q) => n + q.length, 0));
  let at = 0;
  for (const q of parts) {
    out.set(q, at);
    at += q.length;
  }
  return out;
}

/** GPU vs twin: f32 sums of a few hundred terms that cancel (dA, dB reduce over M) err by a few ulps
 *  of the largest entry rather than of each result, so the absolute floor follows the array's scale. */
function scaled(expected: Float32Array) {
  let max = 0;
  for (const v of expected) max = Math.max(max, Math.abs(v));
  return { atol: 1e-5 + 2e-6 * max, rtol: 1e-4 };
}

describe('lora_backward twin', () => {
  const golden = loadGolden('lora');
  test.each(Object.keys(golden))('matches PyTorch autograd: %s', (name) => {
    const c = golden[name];
    const [M, N, K, R] = [c.M, c.N, c.K, c.R] as number[];
    const scale = c.scale as number;
    const x = goldenArray(c.x), A = goldenArray(c.A), B = goldenArray(c.B);
    const U = new Float32Array(M * R);
    loraForwardRef(new Float32Array(M * N), U, x, A, B, M, N, K, R, scale, c.dropout as number, c.seed as number);
    const dX = goldenArray(c.dx_base), dA = new Float32Array(R * K), dB = new Float32Array(N * R);
    loraBackwardRef(
      dX, dA, dB, new Float32Array(M * R), goldenArray(c.dY), x, A, B, U, M, N, K, R, scale,
      c.dropout as number, c.seed as number,
    );
    assertClose(`${name}.dX`, dX, goldenArray(c.dX), TOL);
    assertClose(`${name}.dA`, dA, goldenArray(c.dA), TOL);
    assertClose(`${name}.dB`, dB, goldenArray(c.dB), TOL);
  });

  test('matches finite differences (with dropout)', () => {
    const M = 3, N = 4, K = 5, R = 2, scale = 1.7, p = 0.3, seed = 9;
    const x = rand(M * K, 21), A = rand(R * K, 22), B = rand(N * R, 23), dY = rand(M * N, 24);
    const keepScale = dropoutRef(new Float32Array(M * K).fill(1), seed, p);
    // L = sum(scale * ((mask ⊙ x) Aᵀ) Bᵀ ⊙ dY), in float64; one of x, A, B is the variable.
    const loss = (xs: ArrayLike<number>, As: ArrayLike<number>, Bs: ArrayLike<number>) => {
      let L = 0;
      for (let m = 0; m < M; m++) {
        for (let n = 0; n < N; n++) {
          let y = 0;
          for (let r = 0; r < R; r++) {
            let u = 0;
            for (let k = 0; k < K; k++) u += keepScale[m * K + k] * xs[m * K + k] * As[r * K + k];
            y += u * Bs[n * R + r];
          }
          L += scale * y * dY[m * N + n];
        }
      }
      return L;
    };
    const U = new Float32Array(M * R);
    loraForwardRef(new Float32Array(M * N), U, x, A, B, M, N, K, R, scale, p, seed);
    const dX = new Float32Array(M * K), dA = new Float32Array(R * K), dB = new Float32Array(N * R);
    loraBackwardRef(dX, dA, dB, new Float32Array(M * R), dY, x, A, B, U, M, N, K, R, scale, p, seed);
    // Some of x's coordinates are dropped (gradient exactly 0); the check covers both kinds.
    const all = (n: number) => Array.from({ length: n }, (_, i) => i);
    expect(finiteDifference((v) => loss(v, A, B), Float64Array.from(x), dX, all(M * K))).toEqual([]);
    expect(finiteDifference((v) => loss(x, v, B), Float64Array.from(A), dA, all(R * K))).toEqual([]);
    expect(finiteDifference((v) => loss(x, A, v), Float64Array.from(B), dB, all(N * R))).toEqual([]);
    expect(keepScale.some((v) => v === 0)).toBe(true);
  });
});

describe('lora_backward kernel', () => {
  let gpu: Gpu;
  beforeAll(async () => {
    gpu = await Gpu.create();
  });
  afterAll(() => gpu?.destroy());

  // Ragged M (the reduction of dA/dB: not a multiple of the 32-long chunk), N, K (not multiples of the
  // 64-wide tiles), R in {1, 4, 8, 16, 20}. All but the first split some reduction (split-K) with a
  // short last slice; the last has one product with 256+ tiles (dB, dA: not split) and one split
  // into 171 slices of 96 (dU over N = 16,400).
  test.each([
    [5, 7, 13, 1, 0, 0, false],
    [67, 33, 70, 8, 0.1, 3, true],
    [130, 65, 97, 16, 0.25, 9, false],
    [45, 9, 35, 20, 0.5, 11, true],
    [40, 16400, 16400, 4, 0.1, 5, true],
  ])('equals its twin at M=%i N=%i K=%i R=%i dropout=%s seed=%i accumulate=%s', async (M, N, K, R, p, seed, accumulate) => {
    const x = rand(M * K, 31, -2, 2), A = rand(R * K, 32, -0.3, 0.3), B = rand(N * R, 33, -0.5, 0.5);
    const U = rand(M * R, 34), dY = rand(M * N, 35), scale = 16 / Math.sqrt(R); // alpha 16, rsLoRA
    const dX0 = rand(M * K, 36), dA0 = rand(R * K, 37), dB0 = rand(N * R, 38);
    const t = (label: string, a: Float32Array) => gpu.tensor(label, 'activations', a);
    // A and B (dA and dB) in one buffer, B after A at an offset that is not 0.
    const dXT = t('dX', dX0), gT = t('grads', concat(dA0, dB0));
    const work = gpu.tensor('work', 'scratch', loraBackwardScratchBytes({ M, N, K, R }));
    loraBackward(
      gpu, dXT, gT, work, t('x', x), t('lora', concat(A, B)), [{ dY: t('dY', dY), U: t('U', U), N, a: 0, b: R * K }],
      { M, K, R }, { scale, dropout: p, seed, accumulate },
    );
    const dX = dX0.slice(), dA = dA0.slice(), dB = dB0.slice(), dU = new Float32Array(M * R);
    loraBackwardRef(dX, dA, dB, dU, dY, x, A, B, U, M, N, K, R, scale, p, seed, accumulate);
    const g = await gpu.readF32(gT);
    assertClose('dU', (await gpu.readF32(work)).subarray(0, M * R), dU, scaled(dU));
    assertClose('dB', g.subarray(R * K), dB, scaled(dB));
    assertClose('dA', g.subarray(0, R * K), dA, scaled(dA));
    assertClose('dX', await gpu.readF32(dXT), dX, scaled(dX));
  });

  test('the ragged cases above exercise split-K', () => {
    const s = (M: number, N: number, K: number, R: number) => loraSplits({ M, N, K, R });
    expect([s(5, 7, 13, 1).U.slices, s(5, 7, 13, 1).B.slices, s(5, 7, 13, 1).A.slices]).toEqual([1, 1, 1]);
    expect([s(67, 33, 70, 8).B.slices, s(67, 33, 70, 8).A.slices]).toEqual([3, 3]);
    expect(67 % s(67, 33, 70, 8).B.chunk).not.toBe(0);
    expect([s(130, 65, 97, 16).U.slices, s(130, 65, 97, 16).B.slices]).toEqual([3, 5]);
    const big = s(40, 16400, 16400, 4);
    expect([big.U.slices, big.U.chunk, big.B.slices, big.A.slices]).toEqual([171, 96, 1, 1]);
  });

  test('split-K fills SPLIT_TARGET workgroups at Llama-3.2-1B shapes (512 tokens, rank 8)', () => {
    // q_proj (N = K = 2048) and v_proj (N = 512): 64 x 16 tiles, 32-long chunks.
    const q = loraSplits({ M: 512, N: 2048, K: 2048, R: 8 });
    const v = loraSplits({ M: 512, N: 512, K: 2048, R: 8 });
    // dU: 8 tiles; dB: N/64 tiles; dA: 32 tiles. Every product reaches SPLIT_TARGET unless its
    // reduction runs out of 32-long chunks (v_proj's dB: 16 chunks of M = 512).
    expect(8 * q.U.slices).toBe(SPLIT_TARGET);
    expect(32 * q.B.slices).toBe(SPLIT_TARGET);
    expect(32 * q.A.slices).toBe(SPLIT_TARGET);
    expect(8 * v.U.slices).toBe(128);
    expect(8 * v.B.slices).toBe(128);
    expect(splitK(300, 512, 32)).toEqual({ slices: 1, chunk: 512 });
  });

  // Three adapters sharing x (q/k/v-like: N ragged, one split and one not, per-adapter seeds), in
  // one call: bit for bit one call per adapter in order, and the twin; two adapters likewise.
  test.each([
    [67, [33, 9, 70], 70, 8, 0.1, true],
    [45, [130, 16], 35, 4, 0, false],
    [5, [7, 13, 1], 13, 1, 0.25, true],
  ] as const)('a group at M=%i N=%j K=%i R=%i dropout=%s accumulate=%s: twin, and bit for bit one call per adapter', async (M, Ns, K, R, p, accumulate) => {
    const x = rand(M * K, 41, -2, 2), scale = 2;
    const As = Ns.map((_, j) => rand(R * K, 42 + j, -0.3, 0.3)), Bs = Ns.map((N, j) => rand(N * R, 45 + j, -0.5, 0.5));
    const Us = Ns.map((_, j) => rand(M * R, 48 + j)), dYs = Ns.map((N, j) => rand(M * N, 51 + j));
    // The parameter buffer as the model lays it out: per adapter A then B.
    const offs: { a: number; b: number }[] = [];
    let at = 0;
    Ns.forEach((N) => {
      offs.push({ a: at, b: at + R * K });
      at += R * K + N * R;
    });
    const lora = concat(...Ns.flatMap((_, j) => [As[j], Bs[j]]));
    const g0 = rand(at, 54), dX0 = rand(M * K, 55);
    const seeds = gpu.scalars('test.seeds', Uint32Array.from(Ns.map((_, j) => 100 + 7 * j)));
    const t = (label: string, a: Float32Array) => gpu.tensor(label, 'activations', a);
    const xT = t('x', x), loraT = t('lora', lora);
    const parts = Ns.map((N, j) => ({ dY: t(`dY${j}`, dYs[j]), U: t(`U${j}`, Us[j]), N, ...offs[j], seedIndex: j }));
    const o = { scale, dropout: p, seeds: { table: seeds, index: 0 }, accumulate };
    const dXT = t('dX', dX0), gT = t('g', g0);
    loraBackward(gpu, dXT, gT, gpu.tensor('work', 'scratch', loraGroupScratchBytes(M, K, R, [...Ns])), xT, loraT, parts, { M, K, R }, o);
    const dXP = t('dX.plain', dX0), gP = t('g.plain', g0);
    for (const q of parts) loraBackward(gpu, dXP, gP, gpu.tensor('work1', 'scratch', loraBackwardScratchBytes({ M, N: q.N, K, R })), xT, loraT, [q], { M, K, R }, o);
    const dX = dX0.slice(), grads = g0.slice();
    Ns.forEach((N, j) => {
      const dA = grads.subarray(offs[j].a, offs[j].a + R * K), dB = grads.subarray(offs[j].b, offs[j].b + N * R);
      loraBackwardRef(dX, dA, dB, new Float32Array(M * R), dYs[j], x, As[j], Bs[j], Us[j], M, N, K, R, scale, p, 100 + 7 * j, accumulate);
    });
    const gotG = await gpu.readF32(gT), gotX = await gpu.readF32(dXT);
    assertClose('grads', gotG, grads, scaled(grads));
    assertClose('dX', gotX, dX, scaled(dX));
    expect(gotG).toEqual(await gpu.readF32(gP));
    expect(gotX).toEqual(await gpu.readF32(dXP));
  });

  test('dX regenerates the forward mask from (seed, index)', async () => {
    // N = R = 1, dY = B = 1, scale = 1: dU = 1, and with A = 1, dX = 0 + mask/(1-p) element-wise.
    const M = 96, K = 170, p = 0.25, seed = 1234;
    const dXT = gpu.tensor('dX', 'activations', M * K * 4);
    const one = (n: number) => gpu.tensor('one', 'activations', new Float32Array(n).fill(1));
    loraBackward(
      gpu, dXT, gpu.tensor('grads', 'lora', (K + 1) * 4), gpu.tensor('work', 'scratch', loraBackwardScratchBytes({ M, N: 1, K, R: 1 })),
      gpu.tensor('x', 'activations', M * K * 4), one(K + 1), [{ dY: one(M), U: gpu.tensor('U', 'activations', M * 4), N: 1, a: 0, b: K }],
      { M, K, R: 1 }, { scale: 1, dropout: p, seed },
    );
    const want = dropoutRef(new Float32Array(M * K).fill(1), seed, p);
    const got = await gpu.readF32(dXT);
    expect(got.every((v, i) => v === want[i])).toBe(true);
  });
});
