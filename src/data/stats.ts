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
  let lost = 0;
  const lostRows: number[] = [];
  let keep = 0;
  for (const ex of examples) {
    const n = ex.input_ids.length;
    tokens += n;
    const t = trainedTokens(ex.labels);
    trained += t;
    if (ex.truncated) truncated++;
    if (t === 0 && ex.firstTarget !== undefined && ex.firstTarget >= n) {
      lost++;
      if (lostRows.length < 20) lostRows.push(ex.row);
      keep = Math.max(keep, ex.firstTarget + 1);
    }
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
    lostTargetExamples: lost,
    lostTargetRows: lostRows,
    seqLenToKeepTargets: keep,
    minLength: examples.length ? min : 0,
    maxLength: max,
    meanLength: examples.length ? tokens / examples.length : 0,
    histogram,
  };
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
