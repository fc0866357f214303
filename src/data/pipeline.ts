// The whole data pipeline in one call: read the file as a stream, detect its shape, render each row
// with a template, tokenize by TRL's rules, and collect what went wrong on the way. The site's worker
// and the CLI both call prepareDataset(); the training loop takes `train` / `validation` and batches
// them with makeBatches().
import { DatasetError } from '../errors.ts';
import { makeBatches, packBfd, shuffled, single, splitValidation, type Batch } from './batch.ts';
import type { ReadLimits } from './decode.ts';
import { openDataset } from './readers.ts';
import { detectShape, toExample, type ColumnMapping, type Example, type ShapeName } from './shape.ts';
import { computeStats, makePreview, type DataStats, type Preview } from './stats.ts';
import { checkTemplate, defaultTemplate, render, type Rendered, type TemplateName } from './templates.ts';
import { DEFAULT_TOKENIZE, tokenizeRendered, type TokenizeOptions } from './tokenize.ts';
import type { TextTokenizer } from './tokenizer.ts';
import type { DataSource, FileFormat, Problem, Sequence, SourceRecord, TokenizedExample } from './types.ts';

export interface PrepareOptions extends Partial<TokenizeOptions> {
  template?: TemplateName;
  shape?: ShapeName;
  mapping?: ColumnMapping;
  format?: FileFormat;
  /** Drop rows with problems and go on. Off: any problem fails the dataset (after reading all of it,
   *  so the error lists every bad row, not just the first). */
  skipBadRows?: boolean;
  packing?: boolean;
  shuffle?: boolean;
  seed?: number;
  /** Validation split: a fraction (0.1) or a count of examples (200). */
  validation?: number;
  previewCount?: number;
  limits?: Partial<ReadLimits>;
  /** The file's text encoding when it is not UTF-8 or UTF-16 (see OpenOptions.encoding). */
  encoding?: string;
  /** Called every 1,000 rows with the rows read so far. */
  onProgress?: (rows: number) => void;
  /** Called for each usable row, in the order of the examples before shuffling and splitting (the
   *  TRL export writes the rows back out from here). */
  onExample?: (example: Example, rendered: Rendered) => void;
}

export interface PreparedDataset {
  file: string;
  format: FileFormat;
  encoding: string;
  shape: ShapeName;
  template: TemplateName;
  /** Which column of the file fed each logical field. */
  columns: Record<string, string>;
  train: Sequence[];
  validation: Sequence[];
  /** Over every usable example, before the split. */
  stats: DataStats;
  rowsRead: number;
  problems: Problem[];
  preview: Preview[];
  seqLen: number;
}

const DETECT_ROWS = 50;

export async function prepareDataset(source: DataSource, tok: TextTokenizer, opts: PrepareOptions = {}): Promise<PreparedDataset> {
  const topts: TokenizeOptions = {
    maxLength: opts.maxLength ?? DEFAULT_TOKENIZE.maxLength,
    completionOnlyLoss: opts.completionOnlyLoss ?? DEFAULT_TOKENIZE.completionOnlyLoss,
    assistantOnlyLoss: opts.assistantOnlyLoss ?? DEFAULT_TOKENIZE.assistantOnlyLoss,
  };
  const file = source.name;
  const opened = await openDataset(source, { format: opts.format, limits: opts.limits, encoding: opts.encoding });

  // Shape detection looks at the first rows; they are then processed like the rest.
  const head: SourceRecord[] = [];
  const it = opened.records;
  while (head.length < DETECT_ROWS) {
    const r = await it.next();
    if (r.done) break;
    head.push(r.value);
  }
  if (head.length === 0) {
    const first = opened.problems[0];
    throw new DatasetError(
      first ? `${file}: no usable rows. The first problem: ${first.message}` : `${file} holds no examples.`,
      'Check that the file is the dataset you meant, in JSON, JSONL, CSV, Parquet or text.',
      { file, line: first?.line, problems: opened.problems.slice(0, 100) },
    );
  }
  const resolved = detectShape(head, file, opts.mapping, opts.shape);
  const template = opts.template ?? defaultTemplate(resolved.shape);
  checkTemplate(resolved.shape, template, tok);

  const problems = opened.problems; // the reader appends to this same list
  const examples: TokenizedExample[] = [];
  const preview: Preview[] = [];
  const previewCount = opts.previewCount ?? 3;
  let rows = 0;
  const handle = (rec: SourceRecord) => {
    rows++;
    if (opts.onProgress && rows % 1000 === 0) opts.onProgress(rows);
    const ex = toExample(rec, resolved, file);
    if (isProblem(ex)) {
      problems.push(ex);
      return;
    }
    let rendered;
    try {
      rendered = render(ex, template, tok);
    } catch (e) {
      // Chat templates raise for conversations they do not accept (roles out of order, say).
      const where = rec.line !== undefined ? ` line ${rec.line} (row ${rec.row})` : ` row ${rec.row}`;
      problems.push({ kind: 'render-failed', file, row: rec.row, line: rec.line, message: `${file}${where}: the ${template} template could not render this row: ${e instanceof Error ? e.message : String(e)}.` });
      return;
    }
    opts.onExample?.(ex, rendered);
    const t = tokenizeRendered(rendered, tok, topts, rec.row, rec.line);
    examples.push(t);
    if (preview.length < previewCount) preview.push(makePreview(t, rendered, tok));
  };
  for (const r of head) handle(r);
  for await (const r of it) handle(r);

  problems.sort((a, b) => (a.row ?? 0) - (b.row ?? 0));
  if (problems.length > 0 && !opts.skipBadRows) {
    const shown = problems.slice(0, 20).map((p) => `  ${p.message}`).join('\n');
    const more = problems.length > 20 ? `\n  ... and ${problems.length - 20} more` : '';
    throw new DatasetError(
      `${file}: ${problems.length} row${problems.length === 1 ? '' : 's'} cannot be used:\n${shown}${more}`,
      'Fix these rows, or skip them (the other rows are fine) and train on the rest.',
      { file, line: problems[0].line, row: problems[0].row, problems },
    );
  }
  if (examples.length === 0) {
    throw new DatasetError(`${file}: none of the ${rows} rows could be used.`, 'See the problems listed for each row.', { file, problems });
  }

  const stats = computeStats(examples, topts.maxLength);
  const order = opts.shuffle === false ? examples : shuffled(examples, opts.seed ?? 42);
  const split = splitValidation(order, opts.validation ?? 0);
  const toSeqs = (xs: TokenizedExample[]) => (opts.packing ? packBfd(xs, topts.maxLength) : xs.map(single));
  return {
    file,
    format: opened.format,
    encoding: opened.encoding,
    shape: resolved.shape,
    template,
    columns: Object.fromEntries(Object.entries(resolved.columns)) as Record<string, string>,
    train: toSeqs(split.train),
    validation: toSeqs(split.validation),
    stats,
    rowsRead: rows,
    problems,
    preview,
    seqLen: topts.maxLength,
  };
}

function isProblem(x: Example | Problem): x is Problem {
  return 'message' in x && 'file' in x;
}

export { makeBatches, type Batch };
export { checkTrainedTokens } from './stats.ts';
