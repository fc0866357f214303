// What the user is shown before training: counts, a length histogram and a preview of exactly what
// the model sees, with the trained tokens marked.
import type { Rendered } from './templates.ts';
import { renderedText } from './templates.ts';
import { trainedTokens } from './tokenize.ts';
import type { TextTokenizer } from './tokenizer.ts';
import { DatasetError } from '../errors.ts';
import { IGNORE_INDEX, type TokenizedExample } from './types.ts';

export interface HistogramBin {
  /** Inclusive token-length range. */
  from: number;
  to: number;
  count: number;
}

export interface DataStats {
  examples: number;
  tokens: number;
  /** Tokens that are loss targets (labels != -100, excluding each example's first position). */
  trainedTokens: number;
  truncatedExamples: number;
  /** Examples that had trained tokens and lost every one of them to truncation: they cost compute
   *  and train nothing. The first rows of them, and the smallest sequence length that would keep at
   *  least one trained token in each (0 when none lost them). */
  lostTargetExamples: number;
  lostTargetRows: number[];
  seqLenToKeepTargets: number;
  minLength: number;
  maxLength: number;
  meanLength: number;
  histogram: HistogramBin[];
}

/** Statistics gathered one example at a time, so preparation can stream: only the counts, the
 *  histogram and the first few rows that lost their targets are kept, never the examples. */
export class StatsCollector {
  private readonly histogram: HistogramBin[];
  private examples = 0;
  private tokens = 0;
  private trained = 0;
  private truncated = 0;
  private min = Infinity;
  private max = 0;
  private lost = 0;
  private readonly lostRows: number[] = [];
  private keep = 0;

  /** Bins double in width (1-16, 17-32, 33-64, ...) up to maxLength, where the long tail lives. */
  constructor(maxLength: number) {
    const edges: number[] = [];
    for (let e = 16; e < maxLength; e *= 2) edges.push(e);
    edges.push(Math.max(maxLength, 1));
    this.histogram = edges.map((to, k) => ({ from: k === 0 ? 1 : edges[k - 1] + 1, to, count: 0 }));
  }

  add(ex: TokenizedExample): void {
    const n = ex.input_ids.length;
    this.examples++;
    this.tokens += n;
    const t = trainedTokens(ex.labels);
    this.trained += t;
    if (ex.truncated) this.truncated++;
    if (t === 0 && ex.firstTarget !== undefined && ex.firstTarget >= n) {
      this.lost++;
      if (this.lostRows.length < 20) this.lostRows.push(ex.row);
      this.keep = Math.max(this.keep, ex.firstTarget + 1);
    }
    this.min = Math.min(this.min, n);
    this.max = Math.max(this.max, n);
    const bin = this.histogram.find((b) => n <= b.to) ?? this.histogram[this.histogram.length - 1];
    bin.count++;
  }

  result(): DataStats {
    const n = this.examples;
    return {
      examples: n,
      tokens: this.tokens,
      trainedTokens: this.trained,
      truncatedExamples: this.truncated,
      lostTargetExamples: this.lost,
      lostTargetRows: this.lostRows.slice(),
      seqLenToKeepTargets: this.keep,
      minLength: n ? this.min : 0,
      maxLength: this.max,
      meanLength: n ? this.tokens / n : 0,
      histogram: this.histogram.map((b) => ({ ...b })),
    };
  }
}

/** Before training: refuses a dataset whose truncation left no trained token at all (the run
 *  would step at loss 0 and change nothing), and returns a warning when some examples lost all of
 *  theirs (null when none did). Both name the count and the sequence length that keeps them. */
export function checkTrainedTokens(stats: DataStats, file: string, seqLen: number): string | null {
  if (stats.lostTargetExamples === 0) return null;
  const n = stats.lostTargetExamples;
  const rows = `row${stats.lostTargetRows.length === 1 ? '' : 's'} ${stats.lostTargetRows.join(', ')}${n > stats.lostTargetRows.length ? ', ...' : ''}`;
  const fix = `--seq-len ${stats.seqLenToKeepTargets} keeps at least one trained token in each`;
  if (stats.trainedTokens === 0) {
    throw new DatasetError(
      `${file}: all ${n} example${n === 1 ? '' : 's'} lose every trained token to truncation at sequence length ${seqLen}, so training would change nothing.`,
      `Raise the sequence length: ${fix}; longer keeps more of each answer.`,
      { file, lostTargetExamples: n, seqLen, seqLenToKeepTargets: stats.seqLenToKeepTargets, row: stats.lostTargetRows[0] },
    );
  }
  return `${file}: ${n} of ${stats.examples} examples (${rows}) lose every trained token to truncation at sequence length ${seqLen} and will train nothing; ${fix}.`;
}

export interface PreviewToken {
  id: number;
  /** The text this token adds in context (see tokenPieces): '' for a token whose bytes finish only in
   *  a later token, whose piece then holds the whole character. */
  piece: string;
  trained: boolean;
}

/** A stretch of consecutive tokens that are all trained or all not: what the site highlights and what
 *  `webtune data` wraps in ⟦ ⟧. */
export interface PreviewRun {
  text: string;
  trained: boolean;
}

export interface Preview {
  row: number;
  line?: number;
  /** The full string the template produced (EOS included where TRL appends it). */
  text: string;
  tokens: PreviewToken[];
  /** The decoded tokens, trained and untrained runs in order; their texts joined are decode(ids). */
  runs: PreviewRun[];
  /** The runs as one string with each trained run wrapped in ⟦ ⟧ (what `webtune data` prints). */
  marked: string;
  truncated: boolean;
}

/**
 * What each token adds to the decoded text, read in context, so that the pieces joined are exactly
 * decode(ids). Decoding tokens one by one is not: SentencePiece decoders (Llama 2) strip the leading
 * space of the first token of whatever they are given, so every "▁word" loses its space, and byte
 * tokens (<0xE1> in Llama 2, byte-level BPE in Llama 3) can hold part of a UTF-8 character.
 *
 * This is the incremental detokenization of HF text-generation-inference (`decode_token` in
 * server/text_generation_server/models/model.py): decode a window that starts one emitted token
 * back, and the new token's text is what the window adds to the window without it. The earlier token
 * absorbs the leading-space strip in both decodes. A window that ends in U+FFFD ends inside a
 * character: the token gets '' and the next one carries the whole character. Cost: two decodes of a
 * few tokens per token.
 */
export function tokenPieces(ids: readonly number[], decode: (ids: number[]) => string): string[] {
  const pieces: string[] = ids.map(() => '');
  let from = 0; // window start: a token boundary where the decoded text ended on a whole character
  let read = 0; // the tokens before this one have their pieces
  let before = ''; // decode(ids[from, read))
  for (let i = 0; i < ids.length; i++) {
    const text = decode(ids.slice(from, i + 1));
    const last = i === ids.length - 1;
    // A decoder that rewrote text already given out (none of the ones we ship once cleanup is off,
    // see tokenizer.ts) is also waited out: the next token may bring it back in line.
    if (!last && (text.endsWith('\uFFFD') || !text.startsWith(before))) continue;
    pieces[i] = text.slice(commonPrefix(text, before));
    from = read;
    read = i + 1;
    before = decode(ids.slice(from, read));
  }
  return pieces;
}

function commonPrefix(a: string, b: string): number {
  let k = 0;
  while (k < a.length && k < b.length && a[k] === b[k]) k++;
  return k;
}

/** Consecutive tokens with the same trained flag, their pieces joined. */
export function previewRuns(tokens: readonly PreviewToken[]): PreviewRun[] {
  const runs: PreviewRun[] = [];
  for (const t of tokens) {
    if (t.piece === '') continue; // part of a character the next token completes
    const last = runs[runs.length - 1];
    if (last && last.trained === t.trained) last.text += t.piece;
    else runs.push({ text: t.piece, trained: t.trained });
  }
  return runs;
}

/** The preview of one example. The site (DatasetPanel) shows `runs`, `webtune data` prints `marked`:
 *  both are this one rendering. */
export function makePreview(ex: TokenizedExample, rendered: Rendered, tok: TextTokenizer): Preview {
  const ids = Array.from(ex.input_ids);
  const pieces = tokenPieces(ids, (w) => tok.decode(w));
  const tokens = ids.map((id, i) => ({ id, piece: pieces[i], trained: ex.labels[i] !== IGNORE_INDEX }));
  const runs = previewRuns(tokens);
  const marked = runs.map((r) => (r.trained ? `⟦${r.text}⟧` : r.text)).join('');
  return { row: ex.row, line: ex.line, text: renderedText(rendered, tok), tokens, runs, marked, truncated: ex.truncated };
}
