// Types shared by the data pipeline: where a record came from, what was wrong with it, and what a
// prepared example looks like. Kept free of tokenizer and reader imports so every module can use them.

/** What the user handed us. A Blob (a dropped File, or Node's fs.openAsBlob) is read as a stream and
 *  can be sliced (Parquet needs random access); a ReadableStream is read once, front to back. */
export type DataInput = Blob | ReadableStream<Uint8Array> | Uint8Array | string;

export interface DataSource {
  /** The file name as the user knows it; every message names it. */
  name: string;
  data: DataInput;
}

export type FileFormat = 'json' | 'jsonl' | 'csv' | 'tsv' | 'parquet' | 'text';

/** One record from a reader. `row` is the 1-based data row (array element, JSONL line with data, CSV
 *  record after the header, Parquet row, text paragraph); `line` the 1-based line it starts on. */
export interface SourceRecord {
  value: unknown;
  row: number;
  line?: number;
}

export type ProblemKind =
  | 'json-syntax'
  | 'not-an-object'
  | 'missing-fields'
  | 'wrong-type'
  | 'empty-field'
  | 'ragged-row'
  | 'unterminated-quote'
  | 'bad-quote'
  | 'row-too-long'
  | 'bad-role'
  | 'render-failed';

/** A row we could not use. The pipeline collects these instead of stopping at the first one. */
export interface Problem {
  kind: ProblemKind;
  file: string;
  row?: number;
  line?: number;
  column?: number;
  message: string;
  /** For shape problems: the fields the row has and the fields the shape needs. */
  found?: string[];
  expected?: string[];
  snippet?: string;
}

/** One line of a message list, after ShareGPT's from/value was mapped to role/content. */
export interface ChatMessage {
  role: string;
  content: string;
}

/** A tokenized example before packing. Labels are -100 where the loss does not train; the model
 *  shifts them by one itself (HF convention), so labels[i] is the token at position i. */
export interface TokenizedExample {
  input_ids: Int32Array;
  labels: Int32Array;
  row: number;
  line?: number;
  truncated: boolean;
  /** Before truncation: the length, and the first position that is a loss target (-1 if none).
   *  The example keeps a trained token iff firstTarget < maxLength. */
  fullLength?: number;
  firstTarget?: number;
}

/** A training sequence: one example, or several packed together. position_ids restart at 0 at each
 *  example boundary; seq_lengths lists the examples' lengths in order (sum = input_ids.length). */
export interface Sequence {
  input_ids: Int32Array;
  labels: Int32Array;
  position_ids: Int32Array;
  seq_lengths: number[];
}

export const IGNORE_INDEX = -100;
