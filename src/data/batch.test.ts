// Packing, batching, shuffling and splitting: properties checked over many random inputs, plus a
// small best-fit-decreasing case worked out by hand.
import { describe, expect, it } from 'vitest';
import { makeBatches, packBfd, packSequences, rng, shuffled, single, splitValidation } from './batch.ts';
import { IGNORE_INDEX, type TokenizedExample } from './types.ts';

function example(row: number, len: number, promptLen = 0): TokenizedExample {
  const input_ids = Int32Array.from({ length: len }, (_, i) => row * 1000 + i);
  const labels = Int32Array.from(input_ids, (v, i) => (i < promptLen ? IGNORE_INDEX : v));
  return { input_ids, labels, row, truncated: false };
}

describe('packSequences (the trainer\'s --packing)', () => {
  it('packs single-example sequences as packBfd packs their examples, the same way every time', () => {
    const exs = [3, 6, 2, 5, 4, 1, 7].map((n, i) => example(i + 1, n, 1));
    const want = packBfd(exs, 8);
    expect(packSequences(exs.map(single), 8)).toEqual(want);
    expect(packSequences(exs.map(single), 8)).toEqual(packSequences(exs.map(single), 8));
  });
  it('already packed rows are split into their examples first: nothing is lost, no row grows past seqLen', () => {
    const exs = [3, 6, 2, 5, 4, 1, 7].map((n, i) => example(i + 1, n));
    const once = packBfd(exs, 8);
    const again = packSequences(once, 10);
    const tokens = (ss: { input_ids: Int32Array }[]) => ss.flatMap((s) => Array.from(s.input_ids)).sort((a, b) => a - b);
    expect(tokens(again)).toEqual(tokens(exs));
    for (const s of again) expect(s.input_ids.length).toBeLessThanOrEqual(10);
    expect(again.flatMap((s) => s.seq_lengths).sort()).toEqual([1, 2, 3, 4, 5, 6, 7]);
  });
});

describe('packBfd', () => {
  it('best-fit decreasing by hand: lengths 6,5,4,3,2 into bins of 8', () => {
    const exs = [3, 6, 2, 5, 4].map((n, i) => example(i + 1, n));
    const packed = packBfd(exs, 8);
    // 6 -> new bin A (room 2); 5 -> new bin B (room 3); 4 -> new bin C (room 4);
    // 3 -> best fit is B (room 3, exact); 2 -> best fit is A (room 2, exact).
    expect(packed.map((s) => s.seq_lengths)).toEqual([[6, 2], [5, 3], [4]]);
    expect(Array.from(packed[0].position_ids)).toEqual([0, 1, 2, 3, 4, 5, 0, 1]);
    expect(Array.from(packed[0].input_ids)).toEqual([2000, 2001, 2002, 2003, 2004, 2005, 3000, 3001]);
  });
  it('on random inputs: every token kept exactly once, bins fit, positions restart, no cross-example targets', () => {
    const r = rng(11);
    for (let trial = 0; trial < 30; trial++) {
      const seqLen = 8 + Math.floor(r() * 60);
      const exs = Array.from({ length: 1 + Math.floor(r() * 80) }, (_, i) => example(i + 1, 1 + Math.floor(r() * seqLen), Math.floor(r() * 3)));
      const packed = packBfd(exs, seqLen);
      const seen: number[] = [];
      for (const s of packed) {
        expect(s.input_ids.length).toBeLessThanOrEqual(seqLen);
        expect(s.seq_lengths.reduce((a, b) => a + b, 0)).toBe(s.input_ids.length);
        let o = 0;
        for (const n of s.seq_lengths) {
          for (let k = 0; k < n; k++) expect(s.position_ids[o + k]).toBe(k);
          expect(s.labels[o]).toBe(IGNORE_INDEX); // an example's first token is never a target
          const row = Math.floor(s.input_ids[o] / 1000);
          for (let k = 0; k < n; k++) expect(Math.floor(s.input_ids[o + k] / 1000)).toBe(row);
          for (let k = 1; k < n; k++) expect(s.labels[o + k]).toBe(exs[row - 1].labels[k]);
          seen.push(row);
          o += n;
        }
      }
      expect(seen.sort((a, b) => a - b)).toEqual(exs.map((e) => e.row));
      // With decreasing sizes, a second bin is only opened for an item larger than the first bin's
      // room, so at most one bin ends half full or less.
      expect(packed.filter((s) => s.input_ids.length <= seqLen / 2).length).toBeLessThanOrEqual(1);
    }
  });
});

describe('makeBatches', () => {
  it('pads right to the longest row: pad id, label -100, attention 0', () => {
    const b = makeBatches([single(example(1, 3, 1)), single(example(2, 5))], 2, 99)[0];
    expect([b.B, b.T]).toEqual([2, 5]);
    expect(Array.from(b.input_ids)).toEqual([1000, 1001, 1002, 99, 99, 2000, 2001, 2002, 2003, 2004]);
    expect(Array.from(b.labels)).toEqual([-100, 1001, 1002, -100, -100, 2000, 2001, 2002, 2003, 2004]);
    expect(Array.from(b.attention_mask)).toEqual([1, 1, 1, 0, 0, 1, 1, 1, 1, 1]);
    expect(Array.from(b.position_ids)).toEqual([0, 1, 2, 0, 0, 0, 1, 2, 3, 4]);
  });
  it('a fixed padTo and a short last batch', () => {
    const bs = makeBatches([1, 2, 3].map((i) => single(example(i, 2))), 2, 0, 8);
    expect(bs.map((b) => [b.B, b.T])).toEqual([
      [2, 8],
      [1, 8],
    ]);
  });
});

describe('shuffle and split', () => {
  it('the same seed gives the same order; another seed another one; nothing lost', () => {
    const xs = Array.from({ length: 100 }, (_, i) => i);
    expect(shuffled(xs, 5)).toEqual(shuffled(xs, 5));
    expect(shuffled(xs, 5)).not.toEqual(shuffled(xs, 6));
    expect([...shuffled(xs, 5)].sort((a, b) => a - b)).toEqual(xs);
  });
  it('a fraction or a count; one example always stays for training', () => {
    const xs = Array.from({ length: 10 }, (_, i) => i);
    expect(splitValidation(xs, 0.2)).toEqual({ train: xs.slice(0, 8), validation: [8, 9] });
    expect(splitValidation(xs, 3).validation).toEqual([7, 8, 9]);
    expect(splitValidation(xs, 50).train).toEqual([0]);
    expect(splitValidation(xs, 0.01).validation).toHaveLength(1);
    expect(splitValidation(xs, 0).validation).toEqual([]);
  });
});
