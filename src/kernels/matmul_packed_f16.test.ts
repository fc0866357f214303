import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Gpu } from '../gpu/runtime.ts';
import { assertClose, goldenArray, loadGolden, rand } from '../testing/compare.ts';
import type { MatmulOptions } from './matmul.ts';
import { matmulSplit, matmulSplitBytes, matmulTiled } from './matmul.ts';
import { matmulRef } from './matmul.ref.ts';
import { f16Round, f32ToF16Bits } from './matmul_f16.ref.ts';
import { matmulPackedF16 } from './matmul_packed_f16.ts';
import { matmulPackedF16Ref, packF16, unpackF16 } from './matmul_packed_f16.ref.ts';

const VARIANTS: [boolean, boolean][] = [[false, false], [false, true], [true, false], [true, true]];

describe('packed f16 (twin helpers)', () => {
  test('two f16 per word, even element in the low half, an odd tail padded with +0', () => {
    const x = Float32Array.of(1, -2, 0.5, 65520, 2 ** -24);
    const w = packF16(x);
    expect(Array.from(w)).toEqual([0xc0003c00, 0x7c003800, 0x00000001]);
    expect(Array.from(unpackF16(w, 5))).toEqual([1, -2, 0.5, Infinity, 2 ** -24]);
  });

  test('rounds like f32ToF16Bits (torch .half(), checked against the golden in matmul_f16.test.ts)', () => {
    const x = rand(1001, 5, -70000, 70000);
    const back = unpackF16(packF16(x), x.length);
    expect(Array.from(back)).toEqual(Array.from(x, f16Round));
    expect(Array.from(packF16(x.subarray(0, 2)))).toEqual([(f32ToF16Bits(x[0]) | (f32ToF16Bits(x[1]) << 16)) >>> 0]);
  });
});

describe('matmul_packed_f16 twin', () => {
  test('matches torch.matmul(a, b.half().float().T) (golden of the f16 matmul, a already f16)', () => {
    const g = loadGolden('matmul').f16;
    const M = g.M as number, N = g.N as number, K = g.K as number;
    const c = new Float32Array(M * N);
    matmulPackedF16Ref(c, goldenArray(g.a).map(f16Round), packF16(goldenArray(g.b)), M, N, K, { transB: true });
    assertClose('c_nt', c, goldenArray(g.c_nt), { atol: 1e-5, rtol: 1e-5 });
  });
});

describe('matmul_packed_f16 kernel', () => {
  let gpu: Gpu;
  beforeAll(async () => {
    gpu = await Gpu.create();
  });
  afterAll(() => gpu?.destroy());

  // Ragged against the 64×64 tile and the 16-deep K slice; odd element counts put a row's first
  // element in the high half of a word. Every layout, with accumulate and alpha mixed in.
  test.each([
    [1, 1, 1],
    [37, 53, 29],
    [65, 3, 130],
  ])('equals its twin, and the f32 kernel on the same f16 values bit for bit (M=%i N=%i K=%i)', async (M, N, K) => {
    for (const [transA, transB] of VARIANTS) {
      const opts: MatmulOptions = { transA, transB, accumulate: transA, alpha: transB ? 0.5 : 1 };
      const a = rand(M * K, M + K), b = rand(K * N, N + K), c0 = rand(M * N, M + N);
      const packed = packF16(b);
      const cT = gpu.tensor('c', 'activations', c0), c32T = gpu.tensor('c.f32', 'activations', c0);
      const aT = gpu.tensor('a', 'activations', a);
      matmulPackedF16(gpu, cT, aT, gpu.tensor('b', 'weights', packed), M, N, K, opts);
      matmulTiled(gpu, c32T, aT, gpu.tensor('b.f32', 'weights', unpackF16(packed, K * N)), M, N, K, opts);
      const c = c0.slice();
      matmulPackedF16Ref(c, a, packed, M, N, K, opts);
      const got = await gpu.readF32(cT);
      assertClose(`c transA=${transA} transB=${transB}`, got, c, { atol: 2e-6 * Math.sqrt(K), rtol: 1e-5 });
      expect(got).toEqual(await gpu.readF32(c32T));
      // And the f16 rounding is really there: the f32 twin on the unrounded b differs.
      const exact = c0.slice();
      matmulRef(exact, a, b, M, N, K, opts);
      if (M * N * K > 1) expect(c).not.toEqual(exact);
    }
  });

  test('split-K (the LM head\'s input gradient, dX = dlogits · head): its twin, and the f32 kernel split the same way bit for bit', async () => {
    const M = 45, N = 66, K = 777; // ragged tile, slices of 272 + 272 + 233
    expect(matmulSplit(M, N, K).slices).toBe(3);
    const a = rand(M * K, 7), b = rand(K * N, 8), c0 = rand(M * N, 9);
    const packed = packF16(b);
    const aT = gpu.tensor('a', 'activations', a), scratch = gpu.tensor('split', 'scratch', matmulSplitBytes(M, N, K));
    const cT = gpu.tensor('c', 'activations', c0), c32T = gpu.tensor('c.f32', 'activations', c0);
    const opts: MatmulOptions = { accumulate: true, alpha: 2 };
    matmulPackedF16(gpu, cT, aT, gpu.tensor('b', 'weights', packed), M, N, K, { ...opts, splitK: scratch });
    matmulTiled(gpu, c32T, aT, gpu.tensor('b.f32', 'weights', unpackF16(packed, K * N)), M, N, K, { ...opts, splitK: scratch });
    const c = c0.slice();
    matmulPackedF16Ref(c, a, packed, M, N, K, opts);
    const got = await gpu.readF32(cT);
    assertClose('c', got, c, { atol: 2e-6 * Math.sqrt(K), rtol: 1e-5 });
    expect(got).toEqual(await gpu.readF32(c32T));
  });
});
