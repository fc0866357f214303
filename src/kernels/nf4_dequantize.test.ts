import { afterAll, beforeAll, describe, test } from 'vitest';
import { Gpu } from '../gpu/runtime.ts';
import { assertEqualInts, goldenArray, loadGolden, rand, type GoldenTensor } from '../testing/compare.ts';
import { dqAbsmax, doubleDequantize, doubleQuantize, doubleQuantWords, nf4Words, packWords, quantizeNF4 } from '../quant/nf4.ts';
import { nf4Dequantize } from './nf4_dequantize.ts';
import { nf4DequantizeRef } from './nf4_dequantize.ref.ts';

const golden = loadGolden('nf4');
const ints = (t: GoldenTensor | number) => Uint8Array.from((t as GoldenTensor).data);
const fromBits = (t: GoldenTensor | number) => new Float32Array(Int32Array.from((t as GoldenTensor).data).buffer);
const bitsOf = (a: Float32Array) => new Uint32Array(a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength));

// Dequantization is one f32 multiply per element, so kernel, twin and torch agree bit for bit.
describe('nf4_dequantize twin', () => {
  test('matches torch dequantize_4bit bit for bit', () => {
    const c = golden.quant;
    const n = c.n as number;
    const w = new Float32Array(n);
    nf4DequantizeRef(w, packWords(ints(c.packed), n), fromBits(c.absmax_bits), n);
    const head = goldenArray(c.w_head);
    assertEqualInts('w_head bits', bitsOf(w.subarray(0, head.length)), bitsOf(head));
    const mm = golden.mm_small;
    const N = mm.N as number, K = mm.K as number;
    const wm = new Float32Array(N * K);
    nf4DequantizeRef(wm, packWords(ints(mm.packed), N * K), goldenArray(mm.absmax), N * K);
    assertEqualInts('mm_small.w bits', bitsOf(wm), bitsOf(goldenArray(mm.w)));
  });

  test('double-quantized words give the weights of the CPU DQ codec (doubleDequantize), bit for bit', () => {
    const n = 300 * 70; // 329 blocks: two runs of 256, a code word half full
    const { packed, absmax } = quantizeNF4(rand(n, 5, -2, 2));
    const words = packWords(packed, n);
    const w = new Float32Array(n), expected = new Float32Array(n);
    nf4DequantizeRef(w, words, doubleQuantWords(absmax), n, 64, true);
    nf4DequantizeRef(expected, words, doubleDequantize(doubleQuantize(absmax)), n);
    assertEqualInts('w bits', bitsOf(w), bitsOf(expected));
  });
});

describe('nf4_dequantize kernel', () => {
  let gpu: Gpu;
  beforeAll(async () => {
    gpu = await Gpu.create();
  });
  afterAll(() => gpu?.destroy());

  // Ragged: a single element, odd totals, K not a multiple of 64 (blocks cross rows), more words
  // than one 128-invocation workgroup, and a non-default blocksize.
  test.each([
    [1, 1, 64],
    [3, 5, 64],
    [7, 100, 64],
    [33, 67, 64],
    [129, 130, 64],
    [9, 37, 32],
  ])('equals its twin bit for bit at N=%i K=%i blocksize=%i', async (N, K, blocksize) => {
    const n = N * K;
    const { packed, absmax } = quantizeNF4(rand(n, n, -2, 2), blocksize);
    const words = packWords(packed, n);
    const wT = gpu.tensor('w', 'scratch', n * 4);
    nf4Dequantize(gpu, wT, gpu.tensor('packed', 'weights', words), gpu.tensor('absmax', 'weights', absmax), n, blocksize);
    const w = new Float32Array(n);
    nf4DequantizeRef(w, words, absmax, n, blocksize);
    assertEqualInts('w bits', bitsOf(await gpu.readF32(wT)), bitsOf(w));
  });

  // DQ: 1 to 1030 blocks (past 4 runs of 256), blocksizes 64 and 32. The kernel must equal its twin
  // and the plain kernel fed the decoded f32 absmax, bit for bit: DQ changes storage, not numbers.
  test.each([
    [1, 1, 64],
    [33, 67, 64],
    [129, 511, 64],
    [9, 37, 32],
  ])('double-quantized absmax: equals its twin and the f32-absmax kernel bit for bit at N=%i K=%i blocksize=%i', async (N, K, blocksize) => {
    const n = N * K;
    const { packed, absmax } = quantizeNF4(rand(n, n + 1, -2, 2), blocksize);
    const words = packWords(packed, n), dq = doubleQuantWords(absmax);
    const pT = gpu.tensor('packed', 'weights', words);
    const wT = gpu.tensor('w', 'scratch', n * 4), wPlain = gpu.tensor('w.plain', 'scratch', n * 4);
    nf4Dequantize(gpu, wT, pT, gpu.tensor('absmax.dq', 'weights', dq), n, blocksize, true);
    nf4Dequantize(gpu, wPlain, pT, gpu.tensor('absmax', 'weights', dqAbsmax(dq, Math.ceil(n / blocksize))), n, blocksize);
    const w = new Float32Array(n);
    nf4DequantizeRef(w, words, dq, n, blocksize, true);
    const got = bitsOf(await gpu.readF32(wT));
    assertEqualInts('w bits vs twin', got, bitsOf(w));
    assertEqualInts('w bits vs f32 absmax', got, bitsOf(await gpu.readF32(wPlain)));
  });

  test('round-trips the golden quantization to torch values', async () => {
    const c = golden.quant;
    const n = c.n as number;
    const words = packWords(ints(c.packed), n);
    const wT = gpu.tensor('w', 'scratch', nf4Words(n) * 32);
    nf4Dequantize(gpu, wT, gpu.tensor('packed', 'weights', words), gpu.tensor('absmax', 'weights', fromBits(c.absmax_bits)), n);
    const head = goldenArray(c.w_head);
    assertEqualInts('w_head bits', bitsOf((await gpu.readF32(wT)).subarray(0, head.length)), bitsOf(head));
  });
});
