// Bytes to text, for files of any size. We sniff the first bytes once (BOM, UTF-16 without a BOM,
// binary data, compressed archives), then decode chunk by chunk with a streaming TextDecoder and hand
// out lines. Nothing here holds more than one chunk plus one partial line, so a 200 MB JSONL file is
// never in memory twice. A line longer than the limit is skipped (and reported with its number)
// instead of growing a string until the tab dies.
import { DatasetError, UsageError } from '../errors.ts';
import type { DataInput } from './types.ts';

export interface ReadLimits {
  /** Longest single line (or CSV record, or text paragraph) in characters. */
  maxLineChars: number;
  /** Largest file read whole (a JSON array must be parsed in one piece). */
  maxWholeChars: number;
}

// 16 Mi characters is far beyond any sensible training example, but still a string V8 handles
// without trouble; 512 Mi characters is near V8's maximum string length.
export const DEFAULT_LIMITS: ReadLimits = { maxLineChars: 16 * 2 ** 20, maxWholeChars: 500 * 2 ** 20 };

/** 'utf-8', 'utf-16le' or 'utf-16be' when detected; any WHATWG encoding label the user names
 *  (windows-1252, iso-8859-2, shift_jis, ...) when given explicitly. */
export type TextEncodingName = string;

const SNIFF_BYTES = 8192;
const SLICE_BYTES = 1 << 20;

/** Chunks of raw bytes from any input, front to back. */
export async function* byteChunks(input: DataInput): AsyncGenerator<Uint8Array> {
  if (typeof input === 'string') {
    yield new TextEncoder().encode(input);
    return;
  }
  if (input instanceof Uint8Array) {
    for (let i = 0; i < input.length; i += SLICE_BYTES) yield input.subarray(i, Math.min(input.length, i + SLICE_BYTES));
    return;
  }
  const stream = input instanceof ReadableStream ? input : input.stream();
  const reader = stream.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      if (value && value.length > 0) yield value;
    }
  } finally {
    reader.releaseLock();
  }
}

/** The encoding of a file from its first bytes, and how many BOM bytes to skip. Throws on binary
 *  data, archives and UTF-32, which we cannot read as text. */
export function sniffEncoding(head: Uint8Array, file: string): { encoding: TextEncodingName; bom: number } {
  const b = head;
  if (b.length >= 4 && ((b[0] === 0xff && b[1] === 0xfe && b[2] === 0 && b[3] === 0) || (b[0] === 0 && b[1] === 0 && b[2] === 0xfe && b[3] === 0xff))) {
    throw new DatasetError(`${file} is UTF-32 encoded, which we cannot read.`, 'Save the file as UTF-8 (any text editor can do this) and load it again.', { file, encoding: 'utf-32' });
  }
  if (b.length >= 3 && b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf) return { encoding: 'utf-8', bom: 3 };
  if (b.length >= 2 && b[0] === 0xff && b[1] === 0xfe) return { encoding: 'utf-16le', bom: 2 };
  if (b.length >= 2 && b[0] === 0xfe && b[1] === 0xff) return { encoding: 'utf-16be', bom: 2 };
  const magic = archiveMagic(b);
  if (magic) {
    throw new DatasetError(`${file} is a ${magic} file, not a dataset we can read directly.`, 'Extract it first and load the JSON, JSONL, CSV, Parquet or text file inside.', { file, magic });
  }
  // UTF-16 without a BOM (Windows tools write it): ASCII text then has a zero in every other byte.
  // Whichever half of the byte pairs is all zeros tells the byte order.
  const n = Math.min(b.length, 512) & ~1;
  if (n >= 4) {
    let zeroEven = 0;
    let zeroOdd = 0;
    for (let i = 0; i < n; i += 2) {
      if (b[i] === 0) zeroEven++;
      if (b[i + 1] === 0) zeroOdd++;
    }
    const pairs = n / 2;
    if (zeroOdd >= pairs * 0.6 && zeroEven === 0) return { encoding: 'utf-16le', bom: 0 };
    if (zeroEven >= pairs * 0.6 && zeroOdd === 0) return { encoding: 'utf-16be', bom: 0 };
  }
  const nul = b.subarray(0, SNIFF_BYTES).indexOf(0);
  if (nul >= 0) {
    throw new DatasetError(
      `${file} contains binary data (a zero byte at offset ${nul}), so it is not a text dataset.`,
      'Datasets must be JSON, JSONL, CSV/TSV, Parquet or plain text. If this is one of those, it may be corrupt or in an unusual encoding: save it as UTF-8.',
      { file, offset: nul },
    );
  }
  return { encoding: 'utf-8', bom: 0 };
}

function archiveMagic(b: Uint8Array): string | null {
  if (b.length >= 4 && b[0] === 0x50 && b[1] === 0x4b && b[2] === 0x03 && b[3] === 0x04) return 'zip';
  if (b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b) return 'gzip';
  if (b.length >= 4 && b[0] === 0x28 && b[1] === 0xb5 && b[2] === 0x2f && b[3] === 0xfd) return 'zstd';
  if (b.length >= 3 && b[0] === 0x42 && b[1] === 0x5a && b[2] === 0x68) return 'bzip2';
  if (b.length >= 6 && b[0] === 0xfd && b[1] === 0x37 && b[2] === 0x7a && b[3] === 0x58 && b[4] === 0x5a) return 'xz';
  return null;
}

/** Reads the first bytes of an input without consuming it for good: returns them and a generator
 *  that replays them followed by the rest. */
export async function peekBytes(input: DataInput, want = SNIFF_BYTES): Promise<{ head: Uint8Array; chunks: AsyncGenerator<Uint8Array> }> {
  const it = byteChunks(input);
  const parts: Uint8Array[] = [];
  let have = 0;
  let done = false;
  while (have < want) {
    const r = await it.next();
    if (r.done) {
      done = true;
      break;
    }
    parts.push(r.value);
    have += r.value.length;
  }
  const head = concat(parts, have);
  async function* replay(): AsyncGenerator<Uint8Array> {
    if (head.length > 0) yield head;
    if (done) return;
    for (;;) {
      const r = await it.next();
      if (r.done) return;
      yield r.value;
    }
  }
  return { head, chunks: replay() };
}

function concat(parts: Uint8Array[], total: number): Uint8Array {
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(total);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Decoded text chunks (BOM removed) plus what was detected. Empty files are refused here. */
export async function decodeText(input: DataInput, file: string, encoding?: string): Promise<{ encoding: TextEncodingName; chunks: AsyncGenerator<string> }> {
  if (typeof input === 'string') {
    if (input.length === 0) throw emptyFile(file);
    const text = input.charCodeAt(0) === 0xfeff ? input.slice(1) : input;
    return {
      encoding: 'utf-8',
      chunks: (async function* () {
        yield text;
      })(),
    };
  }
  const { head, chunks } = await peekBytes(input);
  return decodeBytes(head, chunks, file, encoding);
}

/** A decoder for an encoding the user named, or a UsageError listing a few that exist. */
function decoderFor(label: string): TextDecoder {
  try {
    return new TextDecoder(label, { fatal: true });
  } catch {
    throw new UsageError(`Unknown text encoding "${label}".`, 'Use an encoding label such as utf-8, latin1 (windows-1252), iso-8859-2, utf-16le, utf-16be or shift_jis.', { field: 'encoding', encoding: label });
  }
}

/** As decodeText, for bytes already peeked with peekBytes. Text must be valid in its encoding: a
 *  byte sequence that is not is refused with its line (the TextDecoder is fatal), since replacement
 *  characters would be trained on without a word. With an explicit `encoding` the sniffing is
 *  skipped and the file decoded as the user says (a BOM of that encoding is still removed). */
export function decodeBytes(head: Uint8Array, chunks: AsyncIterable<Uint8Array>, file: string, encoding?: string): { encoding: TextEncodingName; chunks: AsyncGenerator<string> } {
  let decoder: TextDecoder;
  if (encoding !== undefined) {
    decoder = decoderFor(encoding);
    if (head.length === 0) throw emptyFile(file);
  } else {
    const sniffed = sniffEncoding(head, file);
    if (head.length <= sniffed.bom) throw emptyFile(file);
    // The default (ignoreBOM: false) strips a BOM that matches the encoding; for BOM-less UTF-16
    // there is none to strip.
    decoder = new TextDecoder(sniffed.encoding, { fatal: true });
  }
  const name = decoder.encoding;
  async function* text(): AsyncGenerator<string> {
    let newlines = 0; // line breaks before the current chunk (0x0A bytes for UTF-8, decoded \n otherwise)
    let tail: Uint8Array = new Uint8Array(0); // the last 4 bytes before this chunk, where a split character starts
    let offset = 0; // file offset of the current chunk
    for await (const c of chunks) {
      let s: string;
      try {
        s = decoder.decode(c, { stream: true });
      } catch {
        throw invalidText(file, name, c, tail, offset, newlines);
      }
      if (name === 'utf-8') newlines += countByte(c, 0x0a);
      else for (let i = s.indexOf('\n'); i >= 0; i = s.indexOf('\n', i + 1)) newlines++;
      tail = c.length >= 4 ? c.subarray(c.length - 4) : concat([tail, c], tail.length + c.length).slice(-4);
      offset += c.length;
      if (s.length > 0) yield s;
    }
    let rest: string;
    try {
      rest = decoder.decode();
    } catch {
      throw invalidText(file, name, new Uint8Array(0), tail, offset, newlines);
    }
    if (rest.length > 0) yield rest;
  }
  return { encoding: name, chunks: text() };
}

function countByte(b: Uint8Array, x: number): number {
  let n = 0;
  for (let i = b.indexOf(x); i >= 0; i = b.indexOf(x, i + 1)) n++;
  return n;
}

/** The error for a chunk the fatal decoder refused, with the line (and for UTF-8 the exact byte)
 *  of the first invalid sequence. `tail` is the 4 bytes before the chunk, which may hold the start
 *  of the character that went wrong; `newlines` counts the line breaks before `chunk`. */
function invalidText(file: string, encoding: string, chunk: Uint8Array, tail: Uint8Array, offset: number, newlines: number): DatasetError {
  const hint = 'Save the file as UTF-8 (any text editor can), or name its encoding (webtune: --encoding latin1, windows-1252, iso-8859-2, utf-16le, ...).';
  if (encoding !== 'utf-8') {
    return new DatasetError(`${file}: text that is not valid ${encoding}, at or after line ${newlines + 1}.`, hint, { file, line: newlines + 1, encoding });
  }
  // Start at a character boundary: the last lead byte of the previous chunk's tail (a character
  // has at most 3 continuation bytes, so the last 4 bytes hold one if the text was valid so far).
  let start = tail.length;
  for (let i = tail.length - 1; i >= 0; i--) {
    if ((tail[i] & 0xc0) !== 0x80) {
      start = i;
      break;
    }
  }
  const joined = new Uint8Array(tail.length - start + chunk.length);
  joined.set(tail.subarray(start));
  joined.set(chunk, tail.length - start);
  const at = firstInvalidUtf8(joined);
  const pre = tail.length - start; // bytes of joined that belong to the previous chunk
  // Line breaks between the invalid byte and the end of the previous chunk were already counted.
  const line = 1 + newlines - countByte(joined.subarray(Math.min(at, pre), pre), 0x0a) + countByte(chunk.subarray(0, Math.max(0, at - pre)), 0x0a);
  const pos = offset - pre + at;
  const bytes = Array.from(joined.subarray(at, at + 4), (b) => `0x${b.toString(16).toUpperCase().padStart(2, '0')}`).join(' ');
  return new DatasetError(
    `${file} line ${line}: bytes that are not valid UTF-8 (${bytes} at byte ${pos}).`,
    hint,
    { file, line, offset: pos, encoding },
  );
}

/** Index of the first byte that starts an invalid UTF-8 sequence (WHATWG rules: no overlong forms,
 *  no surrogates, nothing above U+10FFFF) or one cut short by the end of `b`; the length if none. */
export function firstInvalidUtf8(b: Uint8Array): number {
  let i = 0;
  while (i < b.length) {
    const x = b[i];
    if (x < 0x80) {
      i++;
      continue;
    }
    let need: number, lo = 0x80, hi = 0xbf;
    if (x >= 0xc2 && x <= 0xdf) need = 1;
    else if (x >= 0xe0 && x <= 0xef) {
      need = 2;
      if (x === 0xe0) lo = 0xa0;
      if (x === 0xed) hi = 0x9f;
    } else if (x >= 0xf0 && x <= 0xf4) {
      need = 3;
      if (x === 0xf0) lo = 0x90;
      if (x === 0xf4) hi = 0x8f;
    } else return i;
    for (let k = 1; k <= need; k++) {
      if (i + k >= b.length) return i;
      const y = b[i + k];
      if (y < (k === 1 ? lo : 0x80) || y > (k === 1 ? hi : 0xbf)) return i;
    }
    i += need + 1;
  }
  return b.length;
}

export function emptyFile(file: string): DatasetError {
  return new DatasetError(`${file} is empty.`, 'Pick the file that holds your examples; this one has no content.', { file, line: 1 });
}

export type Line = { text: string; line: number; tooLong?: undefined } | { text: ''; line: number; tooLong: number };

/** Lines of a decoded text stream, numbered from 1, without their line ending (LF or CRLF). A line
 *  over `maxChars` is yielded as `{tooLong: length}` and its text dropped as it streams by. */
export async function* lines(chunks: AsyncIterable<string>, maxChars: number): AsyncGenerator<Line> {
  let partial = '';
  let skipping = 0; // > 0 while discarding an over-long line: characters seen so far
  let n = 1;
  for await (const chunk of chunks) {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf('\n', start);
      if (nl < 0) break;
      if (skipping > 0) {
        yield { text: '', line: n, tooLong: skipping + nl - start };
        skipping = 0;
      } else {
        let s = partial.length > 0 ? partial + chunk.slice(start, nl) : chunk.slice(start, nl);
        partial = '';
        if (s.length > maxChars) yield { text: '', line: n, tooLong: s.length };
        else {
          if (s.endsWith('\r')) s = s.slice(0, -1);
          yield { text: s, line: n };
        }
      }
      n++;
      start = nl + 1;
    }
    const rest = chunk.length - start;
    if (rest === 0) continue;
    if (skipping > 0) skipping += rest;
    else if (partial.length + rest > maxChars) {
      skipping = partial.length + rest;
      partial = '';
    } else partial += chunk.slice(start);
  }
  if (skipping > 0) yield { text: '', line: n, tooLong: skipping };
  else if (partial.length > 0) yield { text: partial.endsWith('\r') ? partial.slice(0, -1) : partial, line: n };
}

/** The whole decoded text, refusing files over the limit (a JSON array is parsed in one piece). */
export async function wholeText(chunks: AsyncIterable<string>, file: string, maxChars: number): Promise<string> {
  const parts: string[] = [];
  let n = 0;
  for await (const c of chunks) {
    n += c.length;
    if (n > maxChars) {
      throw new DatasetError(
        `${file} is too large to read as one JSON document (over ${maxChars} characters).`,
        'Convert it to JSON Lines (one object per line), which is read line by line at any size.',
        { file, limit: maxChars },
      );
    }
    parts.push(c);
  }
  return parts.join('');
}
