import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Gpu } from '../gpu/runtime.ts';
import { rand } from '../testing/compare.ts';
import { splitPairs, topkScratchBytes, topkSelect, topkStages, TOPK_MAX } from './topk_select.ts';
import { topkSelectRef, TOPK_NONE } from './topk_select.ref.ts';

/** A row with many ties (values on a grid of 1/4), a few -inf entries and one +inf when asked. */
function row(V: number, seed: number, opts: { ties?: boolean; inf?: boolean } = {}): Float32Array {
  const x = rand(V, seed, -8, 8);
  if (opts.ties) for (let i = 0; i < V; i++) x[i] = Math.round(x[i] * 4) / 4;
  if (V > 10) x[3] = x[V - 2] = -Infinity;
  if (opts.inf && V > 5) x[5] = Infinity;
  return x;
}

describe('topk_select twin', () => {
  test('ranks larger values first and equal values by id, and pads past the row', () => {
    const r = topkSelectRef(Float32Array.from([1, 5, 3, 5, -Infinity]), 7);
    expect(Array.from(r.ids)).toEqual([1, 3, 2, 0, 4, TOPK_NONE, TOPK_NONE]);
    expect(Array.from(r.values)).toEqual([5, 5, 3, 1, -Infinity, -Infinity, -Infinity]);
  });

  test('agrees with counting: the i-th pick has exactly i entries ranked before it', () => {
    const x = row(3000, 9, { ties: true });
    const { ids } = topkSelectRef(x, 100);
    ids.forEach((id, i) => {
      let ahead = 0;
      for (let j = 0; j < x.length; j++) if (x[j] > x[id] || (x[j] === x[id] && j < id)) ahead++;
      expect(ahead).toBe(i);
    });
  });

  test('stages: one dispatch per 2048 entries, merges until one group', () => {
    expect(topkStages(1, 1)).toEqual([1]);
    expect(topkStages(2048, 256)).toEqual([1]);
    expect(topkStages(128256, 1)).toEqual([63, 1]);
    expect(topkStages(128256, 256)).toEqual([63, 8, 1]);
    expect(topkStages(151936, 256)).toEqual([75, 10, 2, 1]);
    expect(topkScratchBytes(151936)).toBe(75 * 256 * 8);
  });
});

describe('topk_select kernel', () => {
  let gpu: Gpu;
  beforeAll(async () => {
    gpu = await Gpu.create();
  });
  afterAll(() => gpu?.destroy());

  // [V, k, ties, +inf]
  test.each([
    [1, 1, false, false],
    [7, 4, true, false],
    [5, 16, false, false], // k > V: padding comes back after every real entry
    [2047, 1, true, false],
    [2048, 256, false, true],
    [2049, 64, true, false], // one entry in the second group
    [5000, 256, true, false],
    [32000, 50, true, false],
    [151936, 256, true, false], // Qwen2.5's vocabulary: four stages
    [151936, 1, false, false], // greedy
    [128256, 64, true, true],
  ])('equals its twin at V=%i k=%i ties=%s inf=%s', async (V, k, ties, inf) => {
    const x = row(V, V + k, { ties, inf });
    const logits = gpu.tensor('test.logits', 'scratch', x);
    const bytes = topkScratchBytes(V);
    const scratch: [typeof logits, typeof logits] = [gpu.tensor('test.a', 'scratch', bytes), gpu.tensor('test.b', 'scratch', bytes)];
    const out = topkSelect(gpu, scratch, logits, V, k);
    const got = splitPairs(await gpu.readU32(out, 0, 2 * k), k);
    const want = topkSelectRef(x, k);
    expect(Array.from(got.ids)).toEqual(Array.from(want.ids));
    expect(Array.from(got.values)).toEqual(Array.from(want.values));
    for (const t of [logits, ...scratch]) gpu.free(t);
  }, 120_000);

  test('all entries equal: the k smallest ids', async () => {
    const V = 4100, k = TOPK_MAX;
    const logits = gpu.tensor('test.logits', 'scratch', new Float32Array(V).fill(0.5));
    const bytes = topkScratchBytes(V);
    const scratch: [typeof logits, typeof logits] = [gpu.tensor('test.a', 'scratch', bytes), gpu.tensor('test.b', 'scratch', bytes)];
    const got = splitPairs(await gpu.readU32(topkSelect(gpu, scratch, logits, V, k), 0, 2 * k), k);
    expect(Array.from(got.ids)).toEqual(Array.from({ length: k }, (_, i) => i));
    for (const t of [logits, ...scratch]) gpu.free(t);
  }, 120_000);

  test('refuses k outside 1..256 and a scratch too small', () => {
    const t = gpu.tensor('test.t', 'scratch', 16);
    expect(() => topkSelect(gpu, [t, t], t, 4, 0)).toThrow(RangeError);
    expect(() => topkSelect(gpu, [t, t], t, 4, 257)).toThrow(RangeError);
    expect(() => topkSelect(gpu, [t, t], t, 4000, 8)).toThrow(RangeError);
    gpu.free(t);
  });
});
