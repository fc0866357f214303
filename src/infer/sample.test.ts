import { describe, expect, test } from 'vitest';
import { argmax, candidateCount, MAX_CANDIDATES, Rng, sampleCandidates, sampleToken, samplingDistribution, type SamplingOptions } from './sample.ts';
import { topkSelectRef } from '../kernels/topk_select.ref.ts';

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

// The sampler as it was before the selection rewrite: a full stable sort of the vocabulary per token.
// It defines the behaviour the fast sampler must keep (same distribution, same ids per seed).
function referenceDistribution(logits: ArrayLike<number>, o: SamplingOptions): { ids: number[]; probs: Float64Array } {
  const V = logits.length, t = o.temperature;
  let ids = Array.from({ length: V }, (_, i) => i).sort((a, b) => logits[b] - logits[a] || a - b);
  const topK = o.topK ?? 0;
  if (topK > 0 && topK < V) {
    const kth = logits[ids[topK - 1]];
    let n = topK;
    while (n < V && logits[ids[n]] === kth) n++;
    ids = ids.slice(0, n);
  }
  const scaled = ids.map((i) => logits[i] / t);
  let probs = Float64Array.from(scaled, (x) => Math.exp(x - scaled[0]));
  let sum = probs.reduce((a, x) => a + x, 0);
  for (let i = 0; i < probs.length; i++) probs[i] /= sum;
  const topP = o.topP ?? 1;
  if (topP < 1) {
    let cum = 0, cut = probs.length;
    for (let i = probs.length - 1; i > 0; i--) {
      cum += probs[i];
      if (cum <= 1 - topP) cut = i;
      else break;
    }
    ids = ids.slice(0, cut);
    probs = probs.slice(0, cut);
    sum = probs.reduce((a, x) => a + x, 0);
    for (let i = 0; i < probs.length; i++) probs[i] /= sum;
  }
  return { ids, probs };
}

/** The reference draw from a reference distribution (computed once per setting: the full sort is slow). */
function referenceDraw({ ids, probs }: { ids: number[]; probs: Float64Array }, rng: Rng): number {
  const u = rng.next();
  let cum = 0;
  for (let i = 0; i < ids.length; i++) {
    cum += probs[i];
    if (u < cum) return ids[i];
  }
  return ids[ids.length - 1];
}

/** Normal logits times `scale`; `levels` > 0 rounds them to that many steps per unit, making ties. */
function randomLogits(V: number, seed: number, scale = 3, levels = 0): Float32Array {
  const r = new Rng(seed);
  const out = new Float32Array(V);
  for (let i = 0; i < V; i++) {
    const z = Math.sqrt(-2 * Math.log(1 - r.next())) * Math.cos(2 * Math.PI * r.next());
    out[i] = levels ? Math.round(z * scale * levels) / levels : z * scale;
  }
  return out;
}

const SETTINGS: SamplingOptions[] = [];
for (const temperature of [0.5, 0.8, 1.7]) {
  for (const topK of [0, 1, 3, 50, 1000]) for (const topP of [1, 0.95, 0.9, 0.5, 0.05]) SETTINGS.push({ temperature, topK, topP });
}

describe('the selection sampler equals the full-sort sampler', () => {
  test('same ids and probabilities, bit for bit when top-k is on', () => {
    for (const [V, levels] of [[7, 0], [200, 0], [200, 2], [3000, 0], [3000, 4]] as const) {
      for (let seed = 1; seed <= 3; seed++) {
        const logits = randomLogits(V, seed * 101 + V, 3, levels);
        for (const o of SETTINGS) {
          const ref = referenceDistribution(logits, o), got = samplingDistribution(logits, o);
          expect(got.ids, JSON.stringify({ V, levels, seed, o })).toEqual(ref.ids);
          if ((o.topK ?? 0) > 0 && (o.topK ?? 0) < V) expect(Array.from(got.probs)).toEqual(Array.from(ref.probs));
          else got.probs.forEach((p, i) => expect(Math.abs(p - ref.probs[i])).toBeLessThan(1e-12));
        }
      }
    }
  });

  test('same ids for a fixed seed, over many draws and settings (ties included)', () => {
    for (const [V, levels] of [[50, 0], [500, 1], [4000, 0]] as const) {
      const logits = randomLogits(V, V, 2, levels);
      for (const o of SETTINGS) {
        const a = new Rng(7), b = new Rng(7);
        const got = Array.from({ length: 200 }, () => sampleToken(logits, o, a));
        const dist = referenceDistribution(logits, o);
        const ref = Array.from({ length: 200 }, () => referenceDraw(dist, b));
        expect(got, JSON.stringify({ V, levels, o })).toEqual(ref);
      }
    }
  });

  test('at a Llama 3 vocabulary (128,256) with top-k 50 and top-p 0.9, and with top-p or temperature alone', () => {
    const logits = randomLogits(128256, 3);
    for (const o of [{ temperature: 0.8, topK: 50, topP: 0.9 }, { temperature: 0.8, topP: 0.9 }, { temperature: 0.8 }]) {
      const a = new Rng(11), b = new Rng(11);
      const got = Array.from({ length: 5 }, () => sampleToken(logits, o, a));
      const dist = referenceDistribution(logits, o);
      const ref = Array.from({ length: 5 }, () => referenceDraw(dist, b));
      expect(got).toEqual(ref);
    }
  });

  test('ties: the k-th value keeps all its ties; top-p and the draw rank equal logits by id', () => {
    const logits = [1, 2, 2, 2, 0, 2];
    expect(samplingDistribution(logits, { temperature: 1, topK: 2 }).ids).toEqual([1, 2, 3, 5]);
    // Four equal tokens at 0.25 each: a nucleus of 0.5 removes the two with the highest ids.
    const flat = [0, 0, 0, 0];
    expect(samplingDistribution(flat, { temperature: 1, topP: 0.5 }).ids).toEqual([0, 1]);
    expect(samplingDistribution(flat, { temperature: 1, topP: 0.5 }).ids).toEqual(referenceDistribution(flat, { temperature: 1, topP: 0.5 }).ids);
    // Temperature alone over equal logits: u in [0.25k, 0.25(k+1)) draws id k.
    const fixed = (u: number) => ({ next: () => u }) as Rng;
    expect([0.1, 0.3, 0.6, 0.9].map((u) => sampleToken(flat, { temperature: 1 }, fixed(u)))).toEqual([0, 1, 2, 3]);
    expect(sampleToken([5, 1, 5], { temperature: 1 }, fixed(0.4))).toBe(0);
    expect(sampleToken([5, 1, 5], { temperature: 1 }, fixed(0.6))).toBe(2);
  });

  test('frequencies over 10,000 draws match the exact distribution', () => {
    const logits = [2.1, 0.3, 1.7, -0.5, 1.7, 0.9, 2.4, -1.2, 0.0, 1.1, 0.6, 1.7];
    const n = 10_000;
    for (const o of [{ temperature: 1 }, { temperature: 0.7, topP: 0.8 }, { temperature: 1.3, topK: 5 }, { temperature: 0.9, topK: 6, topP: 0.9 }]) {
      // The exact distribution, computed here from its definition (softmax, then the cuts).
      const { ids, probs } = referenceDistribution(logits, o);
      const r = new Rng(2024);
      const hits = new Map<number, number>();
      for (let i = 0; i < n; i++) {
        const id = sampleToken(logits, o, r);
        hits.set(id, (hits.get(id) ?? 0) + 1);
      }
      expect([...hits.keys()].every((id) => ids.includes(id))).toBe(true); // nothing outside the kept set
      ids.forEach((id, i) => {
        // Each count is binomial(n, p): within 4.5 standard deviations (a false failure about 1 in 150,000 per token).
        const p = probs[i], sd = Math.sqrt(n * p * (1 - p));
        expect(Math.abs((hits.get(id) ?? 0) - n * p), JSON.stringify({ o, id, p })).toBeLessThanOrEqual(4.5 * sd + 1);
      });
    }
  });
});

// The GPU selects the best candidateCount() logits (shaders/topk_select.wgsl, whose twin is used
// here) and the CPU finishes on them: the same token as sampleToken over the whole row, with the
// same draws, or undefined (then the caller reads the whole row) without consuming a draw.
describe('sampling from the GPU-selected candidates', () => {
  test('how many candidates each setting needs: greedy one, top-k the next power of two above k, else the whole row', () => {
    expect(candidateCount({ temperature: 0, topK: 0, topP: 0.5 }, 1000)).toBe(1);
    expect(candidateCount({ temperature: 0.8, topK: 50, topP: 0.9 }, 128256)).toBe(64);
    expect(candidateCount({ temperature: 0.8, topK: 64 }, 128256)).toBe(128);
    expect(candidateCount({ temperature: 0.8, topK: 255 }, 128256)).toBe(MAX_CANDIDATES);
    expect(candidateCount({ temperature: 0.8, topK: 256 }, 128256)).toBe(0); // over the cap: the whole row
    expect(candidateCount({ temperature: 0.8, topK: 5 }, 6)).toBe(6); // every token is a candidate
    expect(candidateCount({ temperature: 0.8, topP: 0.9 }, 128256)).toBe(0);
    expect(candidateCount({ temperature: 0.8 }, 128256)).toBe(0);
  });

  test('same ids for a fixed seed as the whole-row sampler, over settings, vocabularies and ties', () => {
    let undecided = 0, decided = 0;
    for (const [V, levels] of [[7, 0], [60, 1], [500, 1], [4000, 0], [4000, 2], [151936, 0], [151936, 8]] as const) {
      const logits = randomLogits(V, V + levels, 2, levels);
      const best = topkSelectRef(logits, Math.min(V, MAX_CANDIDATES)); // the best c are its first c
      for (const o of [{ temperature: 0 }, ...SETTINGS]) {
        const c = candidateCount(o, V);
        if (c === 0) continue;
        const ids = best.ids.subarray(0, c), values = best.values.subarray(0, c);
        const a = new Rng(5), b = new Rng(5);
        for (let i = 0; i < (V > 10000 ? 20 : 100); i++) {
          const got = sampleCandidates(ids, values, V, o, a);
          if (got === undefined) {
            undecided++;
            break;
          }
          decided++;
          expect(got, JSON.stringify({ V, levels, o, i })).toBe(sampleToken(logits, o, b));
        }
      }
    }
    expect(decided).toBeGreaterThan(1000);
    expect(undecided).toBeGreaterThan(0); // the coarse grids tie past the candidates somewhere
  });

  test('ties running past the last candidate: undefined, and no draw taken', () => {
    // k = 2 asks for 4 candidates; ids 1..5 all tie with the 2nd best.
    const logits = Float32Array.from([0, 3, 3, 3, 3, 3, 9, 1]);
    const o = { temperature: 1, topK: 2 };
    const { ids, values } = topkSelectRef(logits, candidateCount(o, logits.length));
    let draws = 0;
    const counting = { next: () => (draws++, 0.5) } as Rng;
    expect(sampleCandidates(ids, values, logits.length, o, counting)).toBeUndefined();
    expect(draws).toBe(0);
    // Ties that end inside the candidates decide: k = 3 reads 4 and the 4th is below the 3rd.
    const l2 = Float32Array.from([0, 3, 3, 2, 2, 1, 9, 1]);
    const o2 = { temperature: 1, topK: 3 };
    const c2 = topkSelectRef(l2, candidateCount(o2, l2.length));
    expect(sampleCandidates(c2.ids, c2.values, l2.length, o2, new Rng(3))).toBe(sampleToken(l2, o2, new Rng(3)));
  });
});
