import { describe, expect, test } from 'vitest';
import { argmax, Rng, sampleToken, samplingDistribution } from './sample.ts';

describe('sampling', () => {
  test('greedy is the first index of the maximum, whatever the other options', () => {
    expect(argmax([0.1, 3, -1, 3])).toBe(1);
    expect(sampleToken([0.1, 3, -1, 3], { temperature: 0, topK: 1, topP: 0.1 }, new Rng(1))).toBe(1);
  });

  test('temperature scales the logits before the softmax', () => {
    const { ids, probs } = samplingDistribution([0, Math.log(3)], { temperature: 0.5 });
    // softmax([0, ln 3] / 0.5) = [1, 9] / 10
    expect(ids).toEqual([1, 0]);
    expect(probs[0]).toBeCloseTo(0.9, 12);
    expect(probs[1]).toBeCloseTo(0.1, 12);
  });

  test('top-k keeps the k largest and ties with the k-th (TopKLogitsWarper)', () => {
    expect(samplingDistribution([1, 5, 3, 3, 0], { temperature: 1, topK: 2 }).ids).toEqual([1, 2, 3]);
    expect(samplingDistribution([1, 5, 3, 2, 0], { temperature: 1, topK: 2 }).ids).toEqual([1, 2]);
  });

  test('top-p keeps the smallest head reaching p, cut as TopPLogitsWarper cuts', () => {
    const logits = [0.5, 0.3, 0.15, 0.05].map(Math.log);
    // Ascending cumulative: 0.05, 0.20, 0.50, 1.0. Removed where <= 1 - p.
    expect(samplingDistribution(logits, { temperature: 1, topP: 0.75 }).ids).toEqual([0, 1]); // 0.05, 0.20 <= 0.25
    expect(samplingDistribution(logits, { temperature: 1, topP: 0.85 }).ids).toEqual([0, 1, 2]); // 0.20 > 0.15 stays
    expect(samplingDistribution(logits, { temperature: 1, topP: 0.01 }).ids).toEqual([0]); // at least one kept
    const { probs } = samplingDistribution(logits, { temperature: 1, topP: 0.75 });
    expect(probs[0]).toBeCloseTo(0.5 / 0.8, 6); // renormalised over what is kept
  });

  test('top-k applies before top-p, both after temperature', () => {
    const logits = [4, 3, 2, 1, 0];
    const k = samplingDistribution(logits, { temperature: 2, topK: 3 });
    const kp = samplingDistribution(logits, { temperature: 2, topK: 3, topP: 0.7 });
    // Over the top 3 at T=2: probs ∝ e^2, e^1.5, e^1 = 0.506, 0.307, 0.186: nucleus 0.7 keeps two.
    expect(k.ids).toEqual([0, 1, 2]);
    expect(kp.ids).toEqual([0, 1]);
  });

  test('draws follow the distribution and repeat with the seed', () => {
    const logits = [Math.log(0.6), Math.log(0.3), Math.log(0.1)];
    const draw = (seed: number, n: number) => {
      const rng = new Rng(seed);
      return Array.from({ length: n }, () => sampleToken(logits, { temperature: 1 }, rng));
    };
    const a = draw(7, 3000);
    expect(draw(7, 3000)).toEqual(a);
    expect(draw(8, 50)).not.toEqual(a.slice(0, 50));
    const freq = [0, 1, 2].map((i) => a.filter((x) => x === i).length / a.length);
    expect(Math.abs(freq[0] - 0.6)).toBeLessThan(0.03);
    expect(Math.abs(freq[1] - 0.3)).toBeLessThan(0.03);
    expect(Math.abs(freq[2] - 0.1)).toBeLessThan(0.02);
  });
});
