// The whole data pipeline in one call: read the file as a stream, detect its shape, render each row
// with a template, tokenize by TRL's rules, and collect what went wrong on the way. The site's worker
// and the CLI both call prepareDataset(); the training loop takes `train` / `validation` and batches
// them with makeBatches().
import { DatasetError } from '../errors.ts';
import { makeBatches, packBfd, packedCount, shuffled, shuffleInPlace, single, splitValidation, validationCount, type Batch } from './batch.ts';
import type { ReadLimits } from './decode.ts';
import { openDataset } from './readers.ts';
import { detectShape, toExample, type ColumnMapping, type Example, type ShapeName } from './shape.ts';
import { makePreview, StatsCollector, type DataStats, type Preview } from './stats.ts';
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

/** What reading a dataset finds, without the examples themselves. */
export interface DatasetScan {
  file: string;
  format: FileFormat;
  encoding: string;
  shape: ShapeName;
  template: TemplateName;
  /** Which column of the file fed each logical field. */
  columns: Record<string, string>;
  /** Over every usable example, before the split. */
  stats: DataStats;
  rowsRead: number;
  problems: Problem[];
  preview: Preview[];
  seqLen: number;
}

export interface PreparedDataset extends DatasetScan {
  train: Sequence[];
  validation: Sequence[];
}

/** What `webtune data` reports: the scan and how many sequences training would make. */
export interface DatasetReport extends DatasetScan {
  trainSequences: number;
  validationSequences: number;
}

const DETECT_ROWS = 50;

function tokenizeOptions(opts: PrepareOptions): TokenizeOptions {
  return {
    maxLength: opts.maxLength ?? DEFAULT_TOKENIZE.maxLength,
    completionOnlyLoss: opts.completionOnlyLoss ?? DEFAULT_TOKENIZE.completionOnlyLoss,
    assistantOnlyLoss: opts.assistantOnlyLoss ?? DEFAULT_TOKENIZE.assistantOnlyLoss,
  };
}

/**
 * One pass over the file: read, parse, template, tokenize and count, handing each usable example to
 * `use` and keeping only the statistics, the problems and the preview rows. What the caller keeps of
 * the examples is up to it, so the memory of a scan does not grow with the file.
 */
export async function scanDataset(source: DataSource, tok: TextTokenizer, opts: PrepareOptions, use: (ex: TokenizedExample) => void): Promise<DatasetScan> {
  const topts = tokenizeOptions(opts);
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
  const stats = new StatsCollector(topts.maxLength);
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
    stats.add(t);
    use(t);
    if (preview.length < previewCount) preview.push(makePreview(t, rendered, tok));
  };
  for (const r of head.splice(0)) handle(r);
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
  const s = stats.result();
  if (s.examples === 0) {
    throw new DatasetError(`${file}: none of the ${rows} rows could be used.`, 'See the problems listed for each row.', { file, problems });
  }
  return {
    file,
    format: opened.format,
    encoding: opened.encoding,
    shape: resolved.shape,
    template,
    columns: Object.fromEntries(Object.entries(resolved.columns)) as Record<string, string>,
    stats: s,
    rowsRead: rows,
    problems,
    preview,
    seqLen: topts.maxLength,
  };
}

/** The dataset ready to train: every example tokenized, shuffled, split and (optionally) packed. */
export async function prepareDataset(source: DataSource, tok: TextTokenizer, opts: PrepareOptions = {}): Promise<PreparedDataset> {
  const examples: TokenizedExample[] = [];
  const scan = await scanDataset(source, tok, opts, (ex) => examples.push(ex));
  const order = opts.shuffle === false ? examples : shuffled(examples, opts.seed ?? 42);
  const split = splitValidation(order, opts.validation ?? 0);
  const toSeqs = (xs: TokenizedExample[]) => (opts.packing ? packBfd(xs, scan.seqLen) : xs.map(single));
  const { file, format, encoding, shape, template, columns, ...rest } = scan;
  return { file, format, encoding, shape, template, columns, train: toSeqs(split.train), validation: toSeqs(split.validation), ...rest };
}

/**
 * What prepareDataset() would make, counted instead of kept: the scan and the number of training
 * and validation sequences. Memory stays flat however long the file: nothing is kept per example,
 * except each one's length (4 bytes) when packing a validation split, which needs to know which
 * lengths the shuffle leaves on each side.
 */
export async function reportDataset(source: DataSource, tok: TextTokenizer, opts: PrepareOptions = {}): Promise<DatasetReport> {
  const seqLen = tokenizeOptions(opts).maxLength;
  const validation = opts.validation ?? 0;
  let n = 0;
  // Packing without a split: the count of examples of each length is all packedCount() needs.
  const counts = opts.packing ? new Float64Array(seqLen + 1) : undefined;
  let lengths = opts.packing && validation > 0 ? new Int32Array(1024) : undefined;
  const scan = await scanDataset(source, tok, opts, (ex) => {
    const len = Math.min(ex.input_ids.length, seqLen);
    if (lengths) {
      if (n === lengths.length) {
        const grown = new Int32Array(2 * n);
        grown.set(lengths);
        lengths = grown;
      }
      lengths[n] = len;
    } else if (counts) counts[len]++;
    n++;
  });
  const held = validationCount(n, validation);
  let trainSequences = n - held;
  let validationSequences = held;
  if (counts && lengths) {
    const order = lengths.subarray(0, n);
    if (opts.shuffle !== false) shuffleInPlace(order, opts.seed ?? 42);
    const heldCounts = new Float64Array(seqLen + 1);
    for (let i = n - held; i < n; i++) heldCounts[order[i]]++;
    for (let i = 0; i < n - held; i++) counts[order[i]]++;
    trainSequences = packedCount(counts, seqLen);
    validationSequences = packedCount(heldCounts, seqLen);
  } else if (counts) {
    trainSequences = packedCount(counts, seqLen);
    validationSequences = 0;
  }
  return { ...scan, trainSequences, validationSequences };
}

function isProblem(x: Example | Problem): x is Problem {
  return 'message' in x && 'file' in x;
}

export { makeBatches, type Batch };
export { checkTrainedTokens } from './stats.ts';
