import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Gpu } from '../gpu/runtime.ts';
import { assertEqualInts, loadGolden, rand, type GoldenTensor } from '../testing/compare.ts';
import { NF4_THRESHOLDS, nf4Words, quantizeNF4, unpackCodes, unpackWords } from '../quant/nf4.ts';
import { nf4Quantize } from './nf4_quantize.ts';
import { nf4QuantizeRef } from './nf4_quantize.ref.ts';

const golden = loadGolden('nf4');
const fromBits = (t: GoldenTensor | number) => new Float32Array(Int32Array.from((t as GoldenTensor).data).buffer);
const ints = (t: GoldenTensor | number) => Uint32Array.from((t as GoldenTensor).data);
const bitsOf = (a: Float32Array) => new Uint32Array(a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength));

/**
 * Random weights whose block scales span 2^-120 .. 2^100, so the integer reciprocal meets many
 * mantissas and exponents. Every third block is adversarial: absmax m plus values within 2 ulp of
 * threshold * m, where a reciprocal off by one ulp flips codes (a truncated or 2.5-ulp `1.0 / m`
 * fails here). Every 17th block is all zero.
 */
function wideWeights(n: number, seed: number, blocksize: number): Float32Array {
  const w = rand(n, seed, -1, 1);
  const e = rand(Math.ceil(n / blocksize), seed + 1, -120, 100);
  const u = rand(Math.ceil(n / blocksize), seed + 2, 0.5, 1);
  const bits = new Float32Array(1), ibits = new Int32Array(bits.buffer);
  for (let i = 0; i < n; i++) {
    const b = Math.floor(i / blocksize), p = i - b * blocksize;
    const m = Math.fround(u[b] * 2 ** Math.round(e[b]));
    if (b % 17 === 5) w[i] = 0;
    else if (b % 3 === 1) {
      if (p === 0) w[i] = m;
      else {
        bits[0] = Math.fround(NF4_THRESHOLDS[p % 15] * m);
        ibits[0] += (Math.floor(p / 15) % 5) - 2;
        w[i] = bits[0];
      }
    } else w[i] = Math.fround(w[i] * 2 ** Math.round(e[b]));
  }
  return w;
}

describe('nf4_quantize twin', () => {
  test('matches the PyTorch golden bit for bit (codes, packed, absmax)', () => {
    const c = golden.quant;
    const n = c.n as number;
    const packed = new Uint32Array(nf4Words(n)), absmax = new Float32Array(Math.ceil(n / 64));
    nf4QuantizeRef(packed, absmax, fromBits(c.x_bits), n);
    const bytes = unpackWords(packed, n);
    assertEqualInts('codes', unpackCodes(bytes, n), ints(c.codes));
    assertEqualInts('packed', bytes, ints(c.packed));
    assertEqualInts('absmax bits', bitsOf(absmax), ints(c.absmax_bits));
  });

  test('agrees with src/quant/nf4.ts quantizeNF4', () => {
    const n = 999, w = wideWeights(n, 5, 64);
    const packed = new Uint32Array(nf4Words(n)), absmax = new Float32Array(Math.ceil(n / 64));
    nf4QuantizeRef(packed, absmax, w, n);
    const q = quantizeNF4(w);
    assertEqualInts('packed', unpackWords(packed, n), q.packed);
    assertEqualInts('absmax', bitsOf(absmax), bitsOf(q.absmax));
  });
});

describe('nf4_quantize kernel', () => {
  let gpu: Gpu;
  beforeAll(async () => {
    gpu = await Gpu.create();
  });
  afterAll(() => gpu?.destroy());

  async function run(w: Float32Array, n: number, blocksize = 64) {
    const pT = gpu.tensor('packed', 'weights', nf4Words(n) * 4);
    const aT = gpu.tensor('absmax', 'weights', Math.ceil(n / blocksize) * 4);
    nf4Quantize(gpu, pT, aT, gpu.tensor('w', 'scratch', w), n, blocksize);
    const packed = (await gpu.readU32(pT)).subarray(0, nf4Words(n));
    const absmax = (await gpu.readF32(aT)).subarray(0, Math.ceil(n / blocksize));
    return { packed, absmax };
  }

  test('is bit-identical to the PyTorch golden on >= 10,000 values (ties, zeros, tail, odd length)', async () => {
    const c = golden.quant;
    const n = c.n as number;
    expect(n).toBeGreaterThanOrEqual(10_000);
    const { packed, absmax } = await run(fromBits(c.x_bits), n);
    const bytes = unpackWords(packed, n);
    assertEqualInts('codes', unpackCodes(bytes, n), ints(c.codes));
    assertEqualInts('packed', bytes, ints(c.packed));
    assertEqualInts('absmax bits', bitsOf(absmax), ints(c.absmax_bits));
  });

  // Ragged element counts (tail blocks of every length class, odd totals), several blocksizes
  // (32 .. 2048: one to eight blocks per workgroup), and 3000 blocks with widely spread scales.
  test.each([
    [1, 64],
    [7, 64],
    [64, 64],
    [5 * 20, 64],
    [33 * 67, 64],
    [64 * 3000 + 11, 64],
    [1001, 32],
    [4096 + 130, 128],
    [2048 * 3 + 5, 2048],
  ])('equals its twin word for word at n=%i blocksize=%i', async (n, blocksize) => {
    const w = wideWeights(n, n + blocksize, blocksize);
    const got = await run(w, n, blocksize);
    const packed = new Uint32Array(nf4Words(n)), absmax = new Float32Array(Math.ceil(n / blocksize));
    nf4QuantizeRef(packed, absmax, w, n, blocksize);
    assertEqualInts('packed words', got.packed, packed);
    assertEqualInts('absmax bits', bitsOf(got.absmax), bitsOf(absmax));
  });
});
