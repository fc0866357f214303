// From tokenized examples to training batches: seeded shuffle, validation split, optional packing
// (TRL's best-fit decreasing) and padding into (B, T) arrays.
import { IGNORE_INDEX, type Sequence, type TokenizedExample } from './types.ts';
import { rng } from '../rng.ts';

export { rng } from '../rng.ts';

/** Fisher-Yates with a seeded generator, in place (typed arrays too: `webtune data` shuffles only
 *  the examples' lengths, and gets the same permutation as the examples get in training). */
export function shuffleInPlace(items: { length: number; [i: number]: unknown }, seed: number): void {
  const r = rng(seed);
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [items[i], items[j]] = [items[j], items[i]];
  }
}

/** Fisher-Yates with a seeded generator; returns a new array. */
export function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = items.slice();
  shuffleInPlace(out, seed);
  return out;
}

/** How many of `n` examples splitValidation() holds out. */
export function validationCount(n: number, validation: number): number {
  if (!(validation > 0) || n < 2) return 0;
  const k = validation < 1 ? Math.round(n * validation) : Math.floor(validation);
  return Math.min(Math.max(k, validation < 1 ? 1 : 0), n - 1);
}

/** Splits off a validation set: a fraction (0 < f < 1) or a count (>= 1) of the examples, taken
 *  from the end of the (already shuffled) list. At least one example always stays for training. */
export function splitValidation<T>(items: readonly T[], validation: number): { train: T[]; validation: T[] } {
  const n = validationCount(items.length, validation);
  return { train: items.slice(0, items.length - n), validation: items.slice(items.length - n) };
}

/** One example as a sequence of its own: positions 0..n-1. */
export function single(ex: TokenizedExample): Sequence {
  const position_ids = new Int32Array(ex.input_ids.length);
  for (let i = 0; i < position_ids.length; i++) position_ids[i] = i;
  return { input_ids: ex.input_ids, labels: ex.labels, position_ids, seq_lengths: [ex.input_ids.length] };
}

/** The bins of best-fit decreasing: each length goes into the open bin with the least room that still
 *  fits it, else into a new bin. Which bin a length lands in depends only on the lengths placed
 *  before it, so feeding the same lengths longest first gives the same bins whatever the examples. */
class BestFit {
  /** open[r] = open bins with exactly r free slots; a segment tree over r finds the smallest r >= len. */
  private readonly open: number[][];
  private readonly size: number;
  private readonly tree: Int32Array; // count of open bins under each node
  bins = 0;

  constructor(private readonly seqLen: number) {
    this.open = Array.from({ length: seqLen + 1 }, () => []);
    let size = 1;
    while (size < seqLen + 1) size <<= 1;
    this.size = size;
    this.tree = new Int32Array(2 * size);
  }

  private bump(r: number, d: number): void {
    for (let k = r + this.size; k >= 1; k >>= 1) this.tree[k] += d;
  }

  /** Leftmost leaf >= lo with a nonzero count, or -1. */
  private firstAtLeast(lo: number, node = 1, l = 0, r = this.size - 1): number {
    if (r < lo || this.tree[node] === 0) return -1;
    if (l === r) return l;
    const m = (l + r) >> 1;
    const left = this.firstAtLeast(lo, 2 * node, l, m);
    return left >= 0 ? left : this.firstAtLeast(lo, 2 * node + 1, m + 1, r);
  }

  /** Places one example of `len` tokens (1..seqLen); returns its bin's index. */
  place(len: number): number {
    const r = this.firstAtLeast(len);
    let bin: number;
    let room: number;
    if (r >= 0) {
      bin = this.open[r].pop()!;
      this.bump(r, -1);
      room = r - len;
    } else {
      bin = this.bins++;
      room = this.seqLen - len;
    }
    if (room > 0) {
      this.open[room].push(bin);
      this.bump(room, 1);
    }
    return bin;
  }
}

/** Best-fit decreasing packing (TRL's "bfd"): longest examples first, each into the open bin with the
 *  least room that still fits it, else a new bin. Examples are never split (they were already
 *  truncated to seqLen), boundaries are kept in seq_lengths, and position_ids restart at 0 for each
 *  example so attention can be confined to it (padding-free / varlen attention). */
export function packBfd(examples: readonly TokenizedExample[], seqLen: number): Sequence[] {
  const order = examples.map((_, i) => i).filter((i) => examples[i].input_ids.length > 0);
  // Stable: equal lengths keep their (shuffled) order, so packing is deterministic.
  order.sort((a, b) => examples[b].input_ids.length - examples[a].input_ids.length || a - b);
  const fit = new BestFit(seqLen);
  const contents: number[][] = [];
  for (const i of order) {
    const bin = fit.place(Math.min(examples[i].input_ids.length, seqLen));
    (contents[bin] ??= []).push(i);
  }
  return contents.map((members) => concatSequences(members.map((i) => examples[i]), seqLen));
}

/** Packs training sequences for the trainer (TRL's SFTConfig(packing=True), whose padding-free
 *  "bfd" strategy this is): each sequence's examples (one each, unless already packed) go through
 *  packBfd into rows of up to seqLen tokens. The same sequences in the same order pack the same way,
 *  so a resumed run gets the rows it had. */
export function packSequences(seqs: readonly Sequence[], seqLen: number): Sequence[] {
  const examples: TokenizedExample[] = [];
  for (const s of seqs) {
    let o = 0;
    for (const n of s.seq_lengths) {
      examples.push({ input_ids: s.input_ids.subarray(o, o + n), labels: s.labels.subarray(o, o + n), row: 0, truncated: false });
      o += n;
    }
  }
  return packBfd(examples, seqLen);
}

/** How many sequences packBfd() makes of examples with these lengths, from the count of examples of
 *  each length (counts[len], len 0..seqLen; empty ones make none): no example needs to be kept. */
export function packedCount(counts: ArrayLike<number>, seqLen: number): number {
  const fit = new BestFit(seqLen);
  for (let len = Math.min(seqLen, counts.length - 1); len >= 1; len--) for (let c = 0; c < counts[len]; c++) fit.place(len);
  return fit.bins;
}

function concatSequences(members: TokenizedExample[], seqLen: number): Sequence {
  const total = members.reduce((s, e) => s + Math.min(e.input_ids.length, seqLen), 0);
  const input_ids = new Int32Array(total);
  const labels = new Int32Array(total);
  const position_ids = new Int32Array(total);
  const seq_lengths: number[] = [];
  let o = 0;
  for (const e of members) {
    const n = Math.min(e.input_ids.length, seqLen);
    input_ids.set(e.input_ids.subarray(0, n), o);
    labels.set(e.labels.subarray(0, n), o);
    // The first token of each packed example has no predecessor within its example: its label is a
    // target of the previous example's last position after the model's shift, so mask it.
    labels[o] = IGNORE_INDEX;
    for (let k = 0; k < n; k++) position_ids[o + k] = k;
    seq_lengths.push(n);
    o += n;
  }
  return { input_ids, labels, position_ids, seq_lengths };
}

/** A (B, T) batch, row-major. Padding: pad id, label -100, attention 0, position 0. */
export interface Batch {
  B: number;
  T: number;
  input_ids: Int32Array; // (B, T)
  labels: Int32Array; // (B, T)
  position_ids: Int32Array; // (B, T)
  attention_mask: Uint8Array; // (B, T)
  /** Per row, the lengths of the examples packed in it (for varlen attention). */
  seq_lengths: number[][];
}

/** Groups sequences into batches of `batchSize` (the last may be smaller), padded on the right to
 *  the longest in the batch, or to `padTo` when given (a fixed shape avoids pipeline rebuilds). */
export function makeBatches(seqs: readonly Sequence[], batchSize: number, padId: number, padTo?: number): Batch[] {
  const out: Batch[] = [];
  for (let s = 0; s < seqs.length; s += batchSize) {
    const group = seqs.slice(s, s + batchSize);
    const B = group.length;
    const T = Math.max(padTo ?? 0, ...group.map((q) => q.input_ids.length));
    const input_ids = new Int32Array(B * T).fill(padId);
    const labels = new Int32Array(B * T).fill(IGNORE_INDEX);
    const position_ids = new Int32Array(B * T);
    const attention_mask = new Uint8Array(B * T);
    group.forEach((q, b) => {
      input_ids.set(q.input_ids, b * T);
      labels.set(q.labels, b * T);
      position_ids.set(q.position_ids, b * T);
      attention_mask.fill(1, b * T, b * T + q.input_ids.length);
    });
    out.push({ B, T, input_ids, labels, position_ids, attention_mask, seq_lengths: group.map((q) => q.seq_lengths) });
  }
  return out;
}
