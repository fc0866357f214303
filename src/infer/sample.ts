// Choosing the next token from one row of logits, on the CPU (the row is already read back).
// Sampling follows transformers' generate(do_sample=True) with its default warpers, in their order:
// TemperatureLogitsWarper, then TopKLogitsWarper, then TopPLogitsWarper, then softmax and a
// multinomial draw. Temperature 0 means greedy (argmax, first index on ties like torch.argmax).
// The draw uses a seeded generator, so the same seed gives the same tokens on every host.
import { rng } from '../rng.ts';

export interface SamplingOptions {
  /** 0 (or less) = greedy. */
  temperature: number;
  /** Keep the k most likely tokens (ties with the k-th kept, as TopKLogitsWarper); 0 = off. */
  topK?: number;
  /** Nucleus: keep the most likely tokens whose probabilities add up to topP; 1 = off. */
  topP?: number;
}

/** mulberry32: a small seeded generator of uniform floats in [0, 1). */
/** A seeded uniform source in [0, 1) (src/rng.ts). */
export class Rng {
  readonly next: () => number;
  constructor(seed: number) {
    this.next = rng(seed);
  }
}

export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

/**
 * The distribution sampling draws from: logits / temperature, top-k and top-p filtered, softmaxed.
 * Returned as (token ids, probabilities) of the tokens left, most likely first.
 */
export function samplingDistribution(logits: ArrayLike<number>, o: SamplingOptions): { ids: number[]; probs: Float64Array } {
  const V = logits.length;
  const t = o.temperature;
  // Most likely first; a stable sort keeps equal logits in id order.
  let ids = Array.from({ length: V }, (_, i) => i).sort((a, b) => logits[b] - logits[a] || a - b);
  const topK = o.topK ?? 0;
  if (topK > 0 && topK < V) {
    // TopKLogitsWarper removes scores strictly below the k-th largest: ties with it stay.
    const kth = logits[ids[topK - 1]];
    let n = topK;
    while (n < V && logits[ids[n]] === kth) n++;
    ids = ids.slice(0, n);
  }
  const scaled = ids.map((i) => logits[i] / t);
  const max = scaled[0];
  let probs = Float64Array.from(scaled, (x) => Math.exp(x - max));
  let sum = probs.reduce((a, x) => a + x, 0);
  for (let i = 0; i < probs.length; i++) probs[i] /= sum;
  const topP = o.topP ?? 1;
  if (topP < 1) {
    // TopPLogitsWarper: sorted ascending, remove tokens whose cumulative probability is <= 1 - topP,
    // always keeping the most likely one. Walking from the least likely end gives the same cut.
    let cum = 0, cut = probs.length; // tokens [cut, end) are removed
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

/** The next token: argmax when temperature <= 0, else a draw from samplingDistribution. */
export function sampleToken(logits: ArrayLike<number>, o: SamplingOptions, rng: Rng): number {
  if (!(o.temperature > 0)) return argmax(logits);
  const { ids, probs } = samplingDistribution(logits, o);
  const u = rng.next();
  let cum = 0;
  for (let i = 0; i < ids.length; i++) {
    cum += probs[i];
    if (u < cum) return ids[i];
  }
  return ids[ids.length - 1]; // u within rounding of 1
}
