// What the user is shown before training: counts, a length histogram and a preview of exactly what
// the model sees, with the trained tokens marked.
import type { Rendered } from './templates.ts';
import { renderedText } from './templates.ts';
import { trainedTokens } from './tokenize.ts';
import type { TextTokenizer } from './tokenizer.ts';
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
  minLength: number;
  maxLength: number;
  meanLength: number;
  histogram: HistogramBin[];
}

/** Bins double in width (1-16, 17-32, 33-64, ...) up to maxLength, where the long tail lives. */
export function computeStats(examples: readonly TokenizedExample[], maxLength: number): DataStats {
  const edges: number[] = [];
  for (let e = 16; e < maxLength; e *= 2) edges.push(e);
  edges.push(Math.max(maxLength, 1));
  const histogram: HistogramBin[] = edges.map((to, k) => ({ from: k === 0 ? 1 : edges[k - 1] + 1, to, count: 0 }));
  let tokens = 0;
  let trained = 0;
  let truncated = 0;
  let min = Infinity;
  let max = 0;
  for (const ex of examples) {
    const n = ex.input_ids.length;
    tokens += n;
    trained += trainedTokens(ex.labels);
    if (ex.truncated) truncated++;
    min = Math.min(min, n);
    max = Math.max(max, n);
    const bin = histogram.find((b) => n <= b.to) ?? histogram[histogram.length - 1];
    bin.count++;
  }
  return {
    examples: examples.length,
    tokens,
    trainedTokens: trained,
    truncatedExamples: truncated,
    minLength: examples.length ? min : 0,
    maxLength: max,
    meanLength: examples.length ? tokens / examples.length : 0,
    histogram,
  };
}

export interface PreviewToken {
  id: number;
  piece: string;
  trained: boolean;
}

export interface Preview {
  row: number;
  line?: number;
  /** The full string the template produced (EOS included where TRL appends it). */
  text: string;
  tokens: PreviewToken[];
  /** The decoded tokens with each trained run wrapped in ⟦ ⟧. */
  marked: string;
  truncated: boolean;
}

export function makePreview(ex: TokenizedExample, rendered: Rendered, tok: TextTokenizer): Preview {
  const ids = Array.from(ex.input_ids);
  const tokens = ids.map((id, i) => ({ id, piece: tok.decode([id]), trained: ex.labels[i] !== IGNORE_INDEX }));
  // Decode whole runs, not single tokens: a byte-level token can hold half a UTF-8 character.
  let marked = '';
  for (let i = 0; i < ids.length; ) {
    let j = i;
    while (j < ids.length && tokens[j].trained === tokens[i].trained) j++;
    const s = tok.decode(ids.slice(i, j));
    marked += tokens[i].trained ? `⟦${s}⟧` : s;
    i = j;
  }
  return { row: ex.row, line: ex.line, text: renderedText(rendered, tok), tokens, marked, truncated: ex.truncated };
}
