// File readers: every format becomes one stream of records, each with its row and line number, and
// a list of problems that grows as the stream is read. Fatal problems (an empty file, binary data, a
// JSON array that does not parse) throw a DatasetError at once; a bad row only adds a Problem, so the
// caller can skip it and carry on. Nothing here writes anywhere: the user's file is only ever read.
import { parquetMetadataAsync, parquetReadObjects, parquetSchema, type FileMetaData } from 'hyparquet';
import { DatasetError } from '../errors.ts';
import { csvRecords, sniffDelimiter } from './csv.ts';
import { DEFAULT_LIMITS, decodeBytes, emptyFile, lines, peekBytes, wholeText, type ReadLimits, type TextEncodingName } from './decode.ts';
import { findJsonFault, lineAt, lineColumn, snippetAt } from './json-locate.ts';
import type { DataInput, DataSource, FileFormat, Problem, SourceRecord } from './types.ts';

export interface OpenedDataset {
  format: FileFormat;
  encoding: TextEncodingName | 'binary';
  /** Column names where the format has them (CSV header, Parquet schema). */
  columns?: string[];
  records: AsyncGenerator<SourceRecord>;
  /** Filled while `records` is consumed. */
  problems: Problem[];
}

export interface OpenOptions {
  /** Force a format instead of detecting it from the name and content. */
  format?: FileFormat;
  limits?: Partial<ReadLimits>;
  /** Decode text in this encoding (a WHATWG label: latin1, windows-1252, utf-16le, ...) instead of
   *  detecting UTF-8 or UTF-16. */
  encoding?: string;
}

const EXT: Record<string, FileFormat> = {
  json: 'json',
  jsonl: 'jsonl',
  ndjson: 'jsonl',
  csv: 'csv',
  tsv: 'tsv',
  tab: 'tsv',
  parquet: 'parquet',
  pq: 'parquet',
  txt: 'text',
  text: 'text',
  md: 'text',
};

function extension(name: string): string {
  const base = name.split(/[\\/]/).pop() ?? name;
  const dot = base.lastIndexOf('.');
  return dot > 0 ? base.slice(dot + 1).toLowerCase() : '';
}

const PAR1 = [0x50, 0x41, 0x52, 0x31];

export async function openDataset(source: DataSource, opts: OpenOptions = {}): Promise<OpenedDataset> {
  const limits: ReadLimits = { ...DEFAULT_LIMITS, ...opts.limits };
  const file = source.name;
  const byExt = EXT[extension(file)];
  if (typeof source.data !== 'string') {
    const { head, chunks } = await peekBytes(source.data);
    if (head.length === 0) throw emptyFile(file);
    const isPar1 = PAR1.every((b, k) => head[k] === b);
    if (opts.format === 'parquet' || (opts.format === undefined && (byExt === 'parquet' || isPar1))) {
      return openParquet(source.data, chunks, file);
    }
    const text = decodeBytes(head, chunks, file, opts.encoding);
    return openText(text.chunks, text.encoding, file, opts.format ?? byExt, limits);
  }
  if (source.data.length === 0) throw emptyFile(file);
  const text = source.data.charCodeAt(0) === 0xfeff ? source.data.slice(1) : source.data;
  return openText(
    (async function* () {
      yield text;
    })(),
    'utf-8',
    file,
    opts.format ?? byExt,
    limits,
  );
}

/** Replays the first decoded chunk after looking at it. */
async function peekText(chunks: AsyncGenerator<string>): Promise<{ first: string; all: AsyncGenerator<string> }> {
  const r = await chunks.next();
  const first = r.done ? '' : r.value;
  async function* all(): AsyncGenerator<string> {
    if (first) yield first;
    yield* chunks;
  }
  return { first, all: all() };
}

async function openText(
  chunks: AsyncGenerator<string>,
  encoding: TextEncodingName,
  file: string,
  hinted: FileFormat | undefined,
  limits: ReadLimits,
): Promise<OpenedDataset> {
  const { first, all } = await peekText(chunks);
  const lead = first.trimStart();
  if (lead.length === 0 && first.length < 4096) {
    throw new DatasetError(`${file} is empty (it holds only whitespace).`, 'Pick the file that holds your examples.', { file, line: 1 });
  }
  let format = hinted;
  // Content wins over the extension for JSON: many ".json" files are really JSON Lines.
  if (format === undefined || format === 'json' || format === 'jsonl') {
    if (lead.startsWith('[')) format = 'json';
    else if (lead.startsWith('{')) {
      const nl = lead.indexOf('\n');
      const firstLine = nl < 0 ? lead : lead.slice(0, nl);
      format = nl >= 0 && !parses(firstLine) && format !== 'jsonl' ? 'json' : 'jsonl';
    } else if (format === undefined) {
      const firstLine = lead.slice(0, Math.max(0, lead.indexOf('\n'))) || lead;
      format = /[,\t;|]/.test(firstLine) && !/[.!?]\s/.test(firstLine) ? 'csv' : 'text';
    }
  }
  const problems: Problem[] = [];
  const base = { format, encoding, problems } as const;
  switch (format) {
    case 'json':
      return { ...base, records: jsonRecords(all, file, limits) };
    case 'jsonl':
      return { ...base, records: jsonlRecords(all, file, limits, problems) };
    case 'csv':
    case 'tsv': {
      const firstLine = first.split('\n', 1)[0];
      const delimiter = format === 'tsv' ? '\t' : sniffDelimiter(firstLine);
      const opened: OpenedDataset = { ...base, records: emptyRecords() };
      opened.records = csvDataRecords(all, file, delimiter, limits, problems, (cols) => (opened.columns = cols));
      return opened;
    }
    case 'text':
      return { ...base, records: textRecords(all, file, limits, problems) };
    default:
      throw new DatasetError(`${file}: cannot read ${format} as text.`, 'Pick JSON, JSONL, CSV, TSV or text.', { file });
  }
}

function parses(s: string): boolean {
  try {
    JSON.parse(s);
    return true;
  } catch {
    return false;
  }
}

async function* emptyRecords(): AsyncGenerator<SourceRecord> {}

function tooLongProblem(file: string, line: number, length: number, limit: number, row?: number): Problem {
  return {
    kind: 'row-too-long',
    file,
    line,
    row,
    message: `${file} line ${line}: the row is ${length.toLocaleString('en-US')} characters long, over the ${limit.toLocaleString('en-US')}-character limit; skipped.`,
  };
}

async function* jsonlRecords(chunks: AsyncIterable<string>, file: string, limits: ReadLimits, problems: Problem[]): AsyncGenerator<SourceRecord> {
  let row = 0;
  for await (const l of lines(chunks, limits.maxLineChars)) {
    if (l.tooLong !== undefined) {
      row++;
      problems.push(tooLongProblem(file, l.line, l.tooLong, limits.maxLineChars, row));
      continue;
    }
    if (l.text.trim().length === 0) continue;
    row++;
    let value: unknown;
    try {
      value = JSON.parse(l.text);
    } catch {
      const f = findJsonFault(l.text) ?? { offset: 0, message: 'invalid JSON' };
      const column = f.offset + 1;
      problems.push({
        kind: 'json-syntax',
        file,
        line: l.line,
        row,
        column,
        snippet: snippetAt(l.text, column),
        message: `${file} line ${l.line}, column ${column}: ${f.message}.`,
      });
      continue;
    }
    yield { value, row, line: l.line };
  }
}

async function* jsonRecords(chunks: AsyncIterable<string>, file: string, limits: ReadLimits): AsyncGenerator<SourceRecord> {
  const text = await wholeText(chunks, file, limits.maxWholeChars);
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    const f = findJsonFault(text) ?? { offset: 0, message: 'invalid JSON' };
    const { line, column } = lineColumn(text, f.offset);
    throw new DatasetError(
      `${file} line ${line}, column ${column}: ${f.message}.\n${snippetAt(lineAt(text, line), column)}`,
      'Fix the JSON at that position (a missing comma or quote is the usual cause), or save the data as JSON Lines, where one bad line does not stop the rest.',
      { file, line, column },
    );
  }
  if (!Array.isArray(doc)) {
    // A single object: a wrapper with one list of rows ({"data": [...]}) or a lone example.
    const lists = doc !== null && typeof doc === 'object' ? Object.values(doc).filter(Array.isArray) : [];
    if (lists.length === 1 && lists[0].length > 0 && lists[0].every((x: unknown) => x !== null && typeof x === 'object' && !Array.isArray(x))) {
      let row = 0;
      for (const value of lists[0] as unknown[]) yield { value, row: ++row };
      return;
    }
    yield { value: doc, row: 1, line: 1 };
    return;
  }
  if (doc.length === 0) throw new DatasetError(`${file} holds an empty JSON array: there are no examples.`, 'Add examples to the array.', { file, line: 1 });
  // Lines of each element, found by the scanner (JSON.parse does not say where values start).
  const starts: number[] = [];
  findJsonFault(text, (o) => starts.push(o));
  let line = 1;
  let pos = 0;
  for (let k = 0; k < doc.length; k++) {
    const at = starts[k] ?? pos;
    for (let j = text.indexOf('\n', pos); j >= 0 && j < at; j = text.indexOf('\n', j + 1)) line++;
    pos = at;
    yield { value: doc[k], row: k + 1, line };
  }
}

async function* csvDataRecords(
  chunks: AsyncIterable<string>,
  file: string,
  delimiter: string,
  limits: ReadLimits,
  problems: Problem[],
  onHeader: (cols: string[]) => void,
): AsyncGenerator<SourceRecord> {
  let header: string[] | null = null;
  let row = 0;
  const kind = delimiter === '\t' ? 'TSV' : 'CSV';
  for await (const r of csvRecords(chunks, delimiter, limits.maxLineChars)) {
    if (header === null) {
      if (r.tooLong || r.unterminated || r.badQuote) {
        throw new DatasetError(`${file} line ${r.line}: the ${kind} header row is malformed (${r.unterminated ? 'a quote is never closed' : r.badQuote ? `a misplaced quote on line ${r.badQuote}` : 'it is far too long'}).`, 'The first row must name the columns, e.g. instruction,response.', { file, line: r.line });
      }
      // Header names lose surrounding spaces: " response" never matches what the user meant.
      header = r.fields.map((h) => h.trim());
      const dup = header.find((h, k) => header!.indexOf(h) !== k);
      if (dup !== undefined) throw new DatasetError(`${file} line ${r.line}: the column "${dup}" appears twice in the header.`, 'Give every column a distinct name.', { file, line: r.line, field: dup });
      onHeader(header);
      continue;
    }
    row++;
    if (r.tooLong) {
      problems.push(tooLongProblem(file, r.line, r.tooLong, limits.maxLineChars, row));
      continue;
    }
    if (r.unterminated) {
      problems.push({ kind: 'unterminated-quote', file, line: r.line, row, message: `${file} line ${r.line} (row ${row}): a quoted field opened here is never closed, so the rest of the file was swallowed by it.` });
      continue;
    }
    if (r.badQuote) {
      problems.push({ kind: 'bad-quote', file, line: r.badQuote, row, message: `${file} line ${r.badQuote} (row ${row}): a quote where ${kind} does not allow one (inside an unquoted field, or text after a closing quote), so its fields are in doubt. Quote the whole field and double the quotes inside it: "5"" pipe".` });
      continue;
    }
    if (r.fields.length !== header.length) {
      problems.push({
        kind: 'ragged-row',
        file,
        line: r.line,
        row,
        message: `${file} line ${r.line} (row ${row}): ${r.fields.length} field${r.fields.length === 1 ? '' : 's'} where the header has ${header.length} (${header.join(', ')}).`,
        expected: header,
      });
      continue;
    }
    const value: Record<string, string> = {};
    for (let k = 0; k < header.length; k++) value[header[k]] = r.fields[k];
    yield { value, row, line: r.line };
  }
  if (header === null) throw new DatasetError(`${file} is empty.`, 'Pick the file that holds your examples.', { file, line: 1 });
  if (row === 0) throw new DatasetError(`${file} has a header row but no data rows.`, 'Add one row per example below the header.', { file, line: 2 });
}

/** Plain text: one example per paragraph (blocks separated by a blank line), as {text}. */
async function* textRecords(chunks: AsyncIterable<string>, file: string, limits: ReadLimits, problems: Problem[]): AsyncGenerator<SourceRecord> {
  let para: string[] = [];
  let size = 0;
  let startLine = 0;
  let row = 0;
  let overflow = false;
  const flush = (): SourceRecord | null => {
    const out = para.length > 0 && !overflow ? { value: { text: para.join('\n') }, row: ++row, line: startLine } : null;
    if (overflow) problems.push(tooLongProblem(file, startLine, size, limits.maxLineChars, ++row));
    para = [];
    size = 0;
    overflow = false;
    return out;
  };
  for await (const l of lines(chunks, limits.maxLineChars)) {
    if (l.tooLong === undefined && l.text.trim().length === 0) {
      const r = flush();
      if (r) yield r;
      continue;
    }
    if (para.length === 0 && !overflow) startLine = l.line;
    size += (l.tooLong ?? l.text.length) + 1;
    if (l.tooLong !== undefined || size > limits.maxLineChars) {
      overflow = true;
      para = [];
    } else if (!overflow) para.push(l.text);
  }
  const r = flush();
  if (r) yield r;
}

// ---- Parquet --------------------------------------------------------------------------------------

interface AsyncBuffer {
  byteLength: number;
  slice(start: number, end?: number): Promise<ArrayBuffer>;
}

async function asAsyncBuffer(data: DataInput, chunks: AsyncIterable<Uint8Array>): Promise<AsyncBuffer> {
  if (data instanceof Blob) return { byteLength: data.size, slice: (s, e) => data.slice(s, e).arrayBuffer() };
  // A stream or bytes: Parquet keeps its index at the end, so it has to be read whole first.
  const parts: Uint8Array[] = [];
  let n = 0;
  for await (const c of chunks) {
    parts.push(c);
    n += c.length;
  }
  const all = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    all.set(p, o);
    o += p.length;
  }
  return { byteLength: n, slice: async (s, e) => all.slice(s, e).buffer };
}

function parquetError(file: string, e: unknown): DatasetError {
  const why = e instanceof Error ? e.message : String(e);
  return new DatasetError(
    `${file} is not a Parquet file we can read: ${why}`,
    /compress|codec|zstd|gzip|brotli|lz4/i.test(why)
      ? 'Its columns use a compression we do not decode in the browser; re-save it with snappy or no compression, or as JSONL.'
      : 'The file may be truncated or corrupt; re-export it, or save the data as JSONL or CSV.',
    { file },
  );
}

async function openParquet(data: DataInput, chunks: AsyncIterable<Uint8Array>, file: string): Promise<OpenedDataset> {
  const buf = await asAsyncBuffer(data, chunks);
  let meta: FileMetaData;
  try {
    meta = await parquetMetadataAsync(buf);
  } catch (e) {
    throw parquetError(file, e);
  }
  try {
    checkParquetChunks(meta);
  } catch (e) {
    throw parquetError(file, e);
  }
  const columns = meta.schema.slice(1).filter((s) => s.name !== undefined).map((s) => s.name);
  const total = Number(meta.num_rows);
  async function* records(): AsyncGenerator<SourceRecord> {
    // One row group at a time: a large file never has every row decoded at once.
    let start = 0;
    for (const rg of meta.row_groups) {
      const end = start + Number(rg.num_rows);
      let rows;
      try {
        rows = await parquetReadObjects({ file: buf, metadata: meta, rowStart: start, rowEnd: end });
      } catch (e) {
        throw parquetError(file, e);
      }
      for (let k = 0; k < rows.length; k++) yield { value: plain(rows[k]), row: start + k + 1 };
      start = end;
    }
    if (total === 0) throw new DatasetError(`${file} has no rows.`, 'Pick the file that holds your examples.', { file });
  }
  return { format: 'parquet', encoding: 'binary', columns, records: records(), problems: [] };
}

/** hyparquet starts reading every column chunk of a row group at once, then awaits only the chunks
 *  whose first path element names a distinct top-level column. A damaged footer that names an
 *  unknown column, or a flat column twice, leaves the other chunks' failures unobserved: unhandled
 *  promise rejections instead of one error (found by src/fuzz/readers.fuzz.test.ts). Such a footer
 *  is refused before any chunk is read. */
function checkParquetChunks(meta: FileMetaData): void {
  const top = new Map(parquetSchema(meta).children.map((c) => [c.element.name, c.children.length === 0]));
  for (const [g, rg] of meta.row_groups.entries()) {
    const seen = new Set<string>();
    for (const chunk of rg.columns) {
      const name = chunk.meta_data?.path_in_schema?.[0];
      const leaf = name === undefined ? undefined : top.get(name);
      if (leaf === undefined) throw new Error(`row group ${g} has a column chunk for "${name}", which the schema does not have`);
      if (leaf && seen.has(name!)) throw new Error(`row group ${g} has two column chunks for "${name}"`);
      seen.add(name!);
    }
  }
}

/** Parquet INT64 columns come back as BigInt, which JSON and templates cannot print; make them
 *  numbers (or strings beyond 2^53). */
function plain(v: unknown): unknown {
  if (typeof v === 'bigint') return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
  if (Array.isArray(v)) return v.map(plain);
  if (v !== null && typeof v === 'object' && !(v instanceof Uint8Array) && !(v instanceof Date)) {
    const o: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) o[k] = plain(x);
    return o;
  }
  return v;
}
