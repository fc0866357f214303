import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Gpu } from '../gpu/runtime.ts';
import { assertClose, rand } from '../testing/compare.ts';
import { attentionCached } from './attention_cached.ts';
import { attentionCachedRef } from './attention_cached.ref.ts';
import { attentionForwardRef } from './attention_forward.ref.ts';

const TOL = { atol: 2e-5, rtol: 1e-4 };

/** Seeded q (Tn, H, D) and a cache k, v (P, Hkv, D) whose rows past pos0+Tn hold NaN, and with a
 *  sliding window W also the rows before the first row's window (pos0 + 1 - W): a kernel that read a
 *  key it may not see would turn the output into NaN. */
function inputs(Tn: number, pos0: number, P: number, H: number, Hkv: number, D: number, window = 0) {
  const seed = Tn * 7 + pos0 * 11 + H * 13 + D;
  const q = rand(Tn * H * D, seed, -2, 2), k = rand(P * Hkv * D, seed + 1, -2, 2), v = rand(P * Hkv * D, seed + 2);
  k.fill(NaN, (pos0 + Tn) * Hkv * D);
  v.fill(NaN, (pos0 + Tn) * Hkv * D);
  if (window > 0 && pos0 + 1 > window) {
    k.fill(NaN, 0, (pos0 + 1 - window) * Hkv * D);
    v.fill(NaN, 0, (pos0 + 1 - window) * Hkv * D);
  }
  return { q, k, v };
}

describe('attention_cached twin', () => {
  test('at pos0 = 0 equals the training attention twin (HF eager attention, checked against PyTorch)', () => {
    const [T, H, Hkv, D] = [11, 4, 2, 8];
    const { q, k, v } = inputs(T, 0, T, H, Hkv, D);
    const o = new Float32Array(q.length), want = new Float32Array(q.length);
    attentionCachedRef(o, q, k, v, T, 0, H, Hkv, D);
    attentionForwardRef(want, new Float32Array(H * T), q, k, v, 1, T, H, Hkv, D);
    assertClose('o', o, want, { atol: 1e-6, rtol: 1e-6 });
  });

  test('with a sliding window, at pos0 = 0 it equals the training twin with that window, and decode steps the rows of one pass', () => {
    const [T, H, Hkv, D, W] = [11, 4, 2, 8, 4];
    const { q, k, v } = inputs(T, 0, T, H, Hkv, D);
    const o = new Float32Array(q.length), want = new Float32Array(q.length);
    attentionCachedRef(o, q, k, v, T, 0, H, Hkv, D, undefined, W);
    attentionForwardRef(want, new Float32Array(H * T), q, k, v, 1, T, H, Hkv, D, undefined, W);
    assertClose('o', o, want, { atol: 1e-6, rtol: 1e-6 });
    const row = H * D;
    for (let t = 0; t < T; t++) {
      const one = new Float32Array(row);
      attentionCachedRef(one, q.subarray(t * row, (t + 1) * row), k, v, 1, t, H, Hkv, D, undefined, W);
      assertClose(`decode ${t}`, one, o.subarray(t * row, (t + 1) * row), { atol: 0, rtol: 0 });
    }
  });

  test('a prompt split into a prefill and single-token steps gives the rows of one full pass', () => {
    const [T, H, Hkv, D, split] = [9, 2, 1, 4, 5];
    const { q, k, v } = inputs(T, 0, T, H, Hkv, D);
    const full = new Float32Array(q.length);
    attentionCachedRef(full, q, k, v, T, 0, H, Hkv, D);
    const row = H * D;
    const head = new Float32Array(split * row);
    attentionCachedRef(head, q.subarray(0, split * row), k, v, split, 0, H, Hkv, D);
    assertClose('prefill', head, full.subarray(0, split * row), { atol: 0, rtol: 0 });
    for (let t = split; t < T; t++) {
      const one = new Float32Array(row);
      attentionCachedRef(one, q.subarray(t * row, (t + 1) * row), k, v, 1, t, H, Hkv, D);
      assertClose(`decode ${t}`, one, full.subarray(t * row, (t + 1) * row), { atol: 0, rtol: 0 });
    }
  });
});

describe('attention_cached kernel', () => {
  let gpu: Gpu;
  beforeAll(async () => {
    gpu = await Gpu.create();
  });
  afterAll(() => gpu?.destroy());

  // [Tn, pos0, P, H, Hkv, D, threads]. Decode (Tn = 1) at several cache fills, one over two key tiles
  // (131 keys > 64 threads); prefill with and without a past; D = 24 and 40 leave lanes outside the
  // V groups (64 / 10 = 6 groups of 10 lanes, 4 idle), D = 128 gives 2 groups; 8 threads force many
  // tiles at tiny P with a partial last one; Hkv = 1 is MQA, H/Hkv = 2 GQA; 66 000 heads need
  // more workgroups than one grid dimension holds.
  // The last column is the sliding window (0 = none): decode past a window that starts mid-tile, a
  // prefill whose rows' windows start at different keys, and a window of 1.
  // A ninth column is the score softcap (Gemma 2), small enough that most scores saturate its tanh.
  const cases: [number, number, number, number, number, number, number | undefined, number, number?][] = [
    [1, 0, 1, 2, 2, 8, undefined, 0],
    [1, 37, 50, 4, 2, 24, undefined, 0],
    [1, 130, 140, 3, 1, 40, undefined, 0],
    [5, 17, 30, 4, 2, 16, 8, 0],
    [7, 0, 7, 2, 1, 128, undefined, 0],
    [6, 3, 12, 4, 4, 12, 4, 0],
    [1, 2, 3, 66_000, 1, 4, 4, 0],
    [1, 130, 140, 3, 1, 40, undefined, 50],
    [5, 17, 30, 4, 2, 16, 8, 6],
    [6, 3, 12, 4, 4, 12, 4, 1],
    [1, 130, 140, 3, 1, 40, undefined, 50, 1.5],
    [5, 17, 30, 4, 2, 16, 8, 0, 1.5],
  ];
  test.each(cases)('equals its twin at Tn=%i pos0=%i P=%i H=%i Hkv=%i D=%i threads=%s window=%i softcap=%s', async (Tn, pos0, P, H, Hkv, D, threads, window, softcap = 0) => {
    const { q, k, v } = inputs(Tn, pos0, P, H, Hkv, D, window);
    const oT = gpu.tensor('o', 'activations', q.byteLength);
    attentionCached(gpu, oT, gpu.tensor('q', 'activations', q), gpu.tensor('k', 'kv-cache', k), gpu.tensor('v', 'kv-cache', v),
      Tn, pos0, H, Hkv, D, undefined, threads, window, softcap);
    const o = new Float32Array(q.length);
    attentionCachedRef(o, q, k, v, Tn, pos0, H, Hkv, D, undefined, window, softcap);
    expect(o.some(Number.isNaN)).toBe(false); // the twin too never looks past the visible keys
    assertClose('o', await gpu.readF32(oT), o, TOL);
  });

  test('at pos0 = 0 equals the training attention twin', async () => {
    const [T, H, Hkv, D] = [19, 4, 2, 16];
    const { q, k, v } = inputs(T, 0, T, H, Hkv, D);
    const oT = gpu.tensor('o', 'activations', q.byteLength);
    attentionCached(gpu, oT, gpu.tensor('q', 'activations', q), gpu.tensor('k', 'kv-cache', k), gpu.tensor('v', 'kv-cache', v), T, 0, H, Hkv, D);
    const want = new Float32Array(q.length);
    attentionForwardRef(want, new Float32Array(H * T), q, k, v, 1, T, H, Hkv, D);
    assertClose('o', await gpu.readF32(oT), want, TOL);
  });

  test('refuses a cache too small for the positions and a head dim that is not a multiple of 4', () => {
    const small = gpu.tensor('kv', 'kv-cache', 4 * 4 * 8);
    const big = gpu.tensor('x', 'scratch', 4 * 64 * 8);
    expect(() => attentionCached(gpu, big, big, small, small, 1, 4, 1, 1, 8)).toThrow(RangeError);
    expect(() => attentionCached(gpu, big, big, big, big, 1, 0, 1, 1, 6)).toThrow(RangeError);
  });
});
