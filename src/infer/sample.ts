// Choosing the next token on the CPU, from one row of logits read back, or from the best few of them
// selected on the GPU (sampleCandidates, below; same token, same draws).
// Sampling follows transformers' generate(do_sample=True) with its default warpers, in their order:
// TemperatureLogitsWarper, then TopKLogitsWarper, then TopPLogitsWarper, then softmax and a
// multinomial draw. Temperature 0 means greedy (argmax, first index on ties like torch.argmax).
// The draw uses a seeded generator, so the same seed gives the same tokens on every host.
//
// Tokens are ranked most likely first, equal logits in id order (a total order), and a draw u in
// [0, 1) picks the first token in that ranking whose cumulative probability exceeds u. Nothing here
// sorts the whole vocabulary (128,256 ids took 65 to 129 ms per token): top-k selects its k with a
// bounded heap and sorts only those (bit for bit the arithmetic of a full sort, as only they enter
// it); without top-k, the top-p cut and the draw are found by a quickselect on probability mass,
// O(V) expected, and only the nucleus is sorted.
import { rng } from '../rng.ts';

export interface SamplingOptions {
  /** 0 (or less) = greedy. */
  temperature: number;
  /** Keep the k most likely tokens (ties with the k-th kept, as TopKLogitsWarper); 0 = off. */
  topK?: number;
  /** Nucleus: keep the most likely tokens whose probabilities add up to topP; 1 = off. */
  topP?: number;
}

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

/** True when token a ranks before token b: a larger logit, or an equal one and a smaller id. */
function before(logits: ArrayLike<number>, a: number, b: number): boolean {
  return logits[a] > logits[b] || (logits[a] === logits[b] && a < b);
}

function sortRanked(logits: ArrayLike<number>, ids: number[]): number[] {
  return ids.sort((a, b) => logits[b] - logits[a] || a - b);
}

/** The k largest logits' ids and every id tied with the k-th (TopKLogitsWarper removes scores
 *  strictly below the k-th largest), most likely first. A min-heap of the k largest values finds
 *  the k-th in one pass (most logits fail the first comparison); a second pass collects the ids. */
function topKIds(logits: ArrayLike<number>, k: number): number[] {
  const V = logits.length;
  const heap = new Float64Array(k);
  for (let i = 0; i < k; i++) {
    // Sift up.
    let j = i;
    const v = logits[i];
    while (j > 0 && heap[(j - 1) >> 1] > v) {
      heap[j] = heap[(j - 1) >> 1];
      j = (j - 1) >> 1;
    }
    heap[j] = v;
  }
  for (let i = k; i < V; i++) {
    const v = logits[i];
    if (!(v > heap[0])) continue;
    // Replace the minimum and sift down.
    let j = 0;
    for (;;) {
      const l = 2 * j + 1, r = l + 1;
      let m = j, mv = v;
      if (l < k && heap[l] < mv) (m = l), (mv = heap[l]);
      if (r < k && heap[r] < mv) (m = r), (mv = heap[r]);
      if (m === j) break;
      heap[j] = heap[m];
      j = m;
    }
    heap[j] = v;
  }
  const kth = heap[0];
  const ids: number[] = [];
  for (let i = 0; i < V; i++) if (logits[i] >= kth) ids.push(i);
  return sortRanked(logits, ids);
}

/** Temperature softmax over `ids` (ranked; `values` their logits, in the same order), then the
 *  top-p cut and renormalisation. */
function softmaxTopP(values: ArrayLike<number>, ids: number[], t: number, topP: number): { ids: number[]; probs: Float64Array } {
  const scaled = ids.map((_, j) => values[j] / t);
  const max = scaled[0];
  let probs = Float64Array.from(scaled, (x) => Math.exp(x - max));
  let sum = probs.reduce((a, x) => a + x, 0);
  for (let i = 0; i < probs.length; i++) probs[i] /= sum;
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

/** exp(logit / t - max / t) of every token (unnormalised probabilities) and their sum. */
function weights(logits: ArrayLike<number>, t: number): { w: Float64Array; sum: number; top: number } {
  const V = logits.length;
  const top = argmax(logits);
  const max = logits[top] / t;
  const w = new Float64Array(V);
  let sum = 0;
  for (let i = 0; i < V; i++) sum += w[i] = Math.exp(logits[i] / t - max);
  return { w, sum, top };
}

/**
 * Quickselect on mass. Rearranges ids[lo, hi) around a pivot: returns a with ids[lo, a) ranked before
 * ids[a], ids(a, hi) after it, and the mass of each side.
 */
function partition(logits: ArrayLike<number>, w: Float64Array, ids: Int32Array, lo: number, hi: number) {
  const mid = lo + ((hi - lo) >> 1);
  const p = ids[mid];
  ids[mid] = ids[hi - 1];
  ids[hi - 1] = p;
  let a = lo, head = 0, tail = 0;
  for (let i = lo; i < hi - 1; i++) {
    const x = ids[i];
    if (before(logits, x, p)) {
      ids[i] = ids[a];
      ids[a++] = x;
      head += w[x];
    } else tail += w[x];
  }
  ids[hi - 1] = ids[a];
  ids[a] = p;
  return { a, head, tail };
}

function allIds(V: number): Int32Array {
  const ids = new Int32Array(V);
  for (let i = 0; i < V; i++) ids[i] = i;
  return ids;
}

/** The nucleus without a sort: the ids left once the longest run of least likely tokens whose
 *  mass is <= budget is removed (the top token always stays). Unordered. */
function nucleus(logits: ArrayLike<number>, w: Float64Array, budget: number, top: number): number[] {
  const ids = allIds(logits.length);
  // ids[0, lo) are kept, ids[hi, V) removed; the cut lies between.
  let lo = 0, hi = ids.length, removed = 0;
  while (lo < hi) {
    const { a, tail } = partition(logits, w, ids, lo, hi);
    const p = ids[a];
    if (removed + tail + w[p] <= budget) {
      removed += tail + w[p]; // the pivot and all below it go
      hi = a;
    } else if (removed + tail <= budget) {
      lo = hi = a + 1; // all below the pivot go, the pivot stays
    } else {
      lo = a + 1; // the cut is below the pivot
    }
  }
  return lo > 0 ? Array.from(ids.subarray(0, lo)) : [top];
}

/** The token at which the cumulative mass, most likely first, first exceeds x (the draw), without a
 *  sort; the least likely token when x is within rounding of the total. */
function crossing(logits: ArrayLike<number>, w: Float64Array, x: number): number {
  const ids = allIds(logits.length);
  let lo = 0, hi = ids.length, acc = 0;
  while (lo < hi) {
    const { a, head } = partition(logits, w, ids, lo, hi);
    const p = ids[a];
    if (acc + head > x) hi = a;
    else if (acc + head + w[p] > x) return p;
    else {
      acc += head + w[p];
      lo = a + 1;
    }
  }
  let least = 0;
  for (let i = 1; i < logits.length; i++) if (before(logits, least, i)) least = i;
  return least;
}

/**
 * The distribution sampling draws from: logits / temperature, top-k and top-p filtered, softmaxed.
 * Returned as (token ids, probabilities) of the tokens left, most likely first.
 */
export function samplingDistribution(logits: ArrayLike<number>, o: SamplingOptions): { ids: number[]; probs: Float64Array } {
  const V = logits.length, t = o.temperature, topK = o.topK ?? 0, topP = o.topP ?? 1;
  const ranked = (ids: number[]) => softmaxTopP(ids.map((i) => logits[i]), ids, t, topP);
  if (topK > 0 && topK < V) return ranked(topKIds(logits, topK));
  if (topP >= 1) return ranked(sortRanked(logits, Array.from({ length: V }, (_, i) => i)));
  // Top-p alone: find the nucleus by mass, then sort and normalise only it.
  const { w, sum, top } = weights(logits, t);
  const ids = sortRanked(logits, nucleus(logits, w, (1 - topP) * sum, top));
  const probs = Float64Array.from(ids, (i) => w[i] / sum);
  const kept = probs.reduce((a, x) => a + x, 0);
  for (let i = 0; i < probs.length; i++) probs[i] /= kept;
  return { ids, probs };
}

/** The next token: argmax when temperature <= 0, else a draw from samplingDistribution. */
export function sampleToken(logits: ArrayLike<number>, o: SamplingOptions, rng: Rng): number {
  if (!(o.temperature > 0)) return argmax(logits);
  const V = logits.length, topK = o.topK ?? 0, topP = o.topP ?? 1;
  if (!(topK > 0 && topK < V) && topP >= 1) {
    // Temperature alone: the whole vocabulary stays; find where the draw lands without sorting it.
    const { w, sum } = weights(logits, o.temperature);
    return crossing(logits, w, rng.next() * sum);
  }
  return draw(samplingDistribution(logits, o), rng);
}

/** A draw from (ids, probs): the first id whose cumulative probability exceeds u. */
function draw({ ids, probs }: { ids: number[]; probs: Float64Array }, rng: Rng): number {
  const u = rng.next();
  let cum = 0;
  for (let i = 0; i < ids.length; i++) {
    cum += probs[i];
    if (u < cum) return ids[i];
  }
  return ids[ids.length - 1]; // u within rounding of 1
}

// Sampling from candidates: the GPU selects the best few logits of a row (src/kernels/topk_select.ts)
// and only they are read back. Greedy needs one; top-k needs the k best and enough after them to see
// where the ties with the k-th end. Temperature alone or top-p without top-k weigh every token (the
// softmax's sum runs over the whole vocabulary), so those read the whole row.

/** The most candidates a token reads back (2 KiB of (value, id) pairs). */
export const MAX_CANDIDATES = 256;

/** How many of the best logits `o` needs to draw from, or 0 when it needs the whole row of V. */
export function candidateCount(o: SamplingOptions, V: number): number {
  if (!(o.temperature > 0)) return 1;
  const topK = o.topK ?? 0;
  if (!(topK > 0 && topK < V)) return 0;
  // One more than k shows whether the k-th's ties go on; a power of two keeps the uniforms few.
  const c = Math.min(V, 2 ** Math.ceil(Math.log2(topK + 1)));
  return c <= MAX_CANDIDATES ? c : 0;
}

/**
 * sampleToken over the `ids` and `values` of the best candidateCount(o, V) logits of a row of V,
 * ranked (larger value first, equal values by id): the same token for the same rng state, or
 * undefined, without drawing, when the candidates cannot tell (ties with the k-th reach past the
 * last candidate); the caller then samples from the whole row.
 */
export function sampleCandidates(ids: ArrayLike<number>, values: ArrayLike<number>, V: number, o: SamplingOptions, rng: Rng): number | undefined {
  if (!(o.temperature > 0)) return ids[0];
  const c = ids.length, topK = o.topK ?? 0;
  if (!(topK > 0 && topK < V) || c < topK) throw new RangeError(`sampleCandidates: ${c} candidates cannot sample top-k ${topK} of ${V}`);
  const kth = values[topK - 1];
  if (c < V && values[c - 1] === kth) return undefined;
  let n = topK;
  while (n < c && values[n] === kth) n++;
  const kept = Array.from({ length: n }, (_, i) => ids[i]);
  return draw(softmaxTopP(Array.from({ length: n }, (_, i) => values[i]), kept, o.temperature, o.topP ?? 1), rng);
}
