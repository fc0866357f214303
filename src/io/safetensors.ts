// safetensors reader and writer.
//
// Reader: validates exactly what the Rust reference (huggingface/safetensors `tensor.rs` @24b0b285,
// `read_metadata` + `Metadata::validate`) validates, plus duplicate keys, which serde's HashMap
// silently collapses but the format README forbids:
//   - u64 LE header length N <= 100,000,000 and 8 + N <= file size;
//   - header is UTF-8 JSON (leading/trailing JSON whitespace allowed, as the reference's tests do);
//   - `__metadata__` is a string -> string map; every other key is {dtype, shape, data_offsets};
//   - sorted by data_offsets, the tensors tile the byte buffer from 0 with no gap and no overlap;
//   - (end - begin) == prod(shape) * bits / 8, and the bit count is whole bytes;
//   - 8 + N + last end == file size: no trailing bytes (the anti-polyglot rule).
// Only the header is read up front; tensor bytes are read one tensor at a time on request, so a
// multi-GB shard never sits on the JS heap whole.
//
// Writer: byte-identical to the Python library (`safetensors.torch.save_file`, which calls the
// Rust `prepare`): tensors sorted by the Rust `Dtype` enum order descending, then by name (byte
// order), offsets packed with no padding, compact serde_json header with `__metadata__` first,
// padded with spaces to a multiple of 8. Note: the enum order is not quite "alignment": BF16 sorts
// before F16 and U32 before I32 (docs/formats.md#safetensors).

import { ModelFileError } from '../errors.ts';
import { type ByteSource, shortRead } from './byte-source.ts';

/** Every dtype the reference knows, in its `enum Dtype` declaration order (which drives the
 *  writer's sort), with its size in bits. */
const DTYPE_TABLE = [
  ['BOOL', 8], ['F4', 4], ['F6_E2M3', 6], ['F6_E3M2', 6], ['U8', 8], ['I8', 8], ['F8_E5M2', 8], ['F8_E4M3', 8],
  ['F8_E8M0', 8], ['F8_E4M3FNUZ', 8], ['F8_E5M2FNUZ', 8], ['I16', 16], ['U16', 16], ['F16', 16], ['BF16', 16],
  ['I32', 32], ['U32', 32], ['F32', 32], ['C64', 64], ['F64', 64], ['I64', 64], ['U64', 64],
] as const;

export type DType = (typeof DTYPE_TABLE)[number][0];

const DTYPE_BITS = new Map<string, number>(DTYPE_TABLE.map(([d, b]) => [d, b]));
const DTYPE_RANK = new Map<string, number>(DTYPE_TABLE.map(([d], i) => [d, i]));

/** Dtypes readFloat32 converts. Everything else is readable as raw bytes only. */
export const FLOAT_DTYPES: readonly DType[] = ['F32', 'F16', 'BF16', 'F64'];

export function dtypeBits(dtype: DType): number {
  return DTYPE_BITS.get(dtype)!;
}

export const MAX_HEADER_SIZE = 100_000_000;

export interface TensorInfo {
  name: string;
  dtype: DType;
  shape: number[];
  /** Byte range inside the data section (after the 8-byte length and the header); end exclusive. */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  /** Size N of the JSON header in bytes; the data section starts at 8 + N. */
  headerSize: number;
  metadata: Record<string, string> | null;
  /** In file (offset) order. */
  tensors: TensorInfo[];
}

const CORRUPT_HINT = 'The file is damaged or is not a safetensors file. Download it again, or re-save it with the safetensors library.';

function fail(file: string, reason: string, message: string, extra: Record<string, unknown> = {}, hint = CORRUPT_HINT): ModelFileError {
  return new ModelFileError(`${file}: ${message}`, hint, { file, reason, ...extra });
}

/** The refusal for pickle-based checkpoints, shared with the model-folder reader. */
export function pickleRefusal(file: string, why: string): ModelFileError {
  return new ModelFileError(
    `${file} ${why}. PyTorch pickle checkpoints (*.bin, *.pt, *.pth, *.ckpt, *.pkl) can execute arbitrary code when loaded, so webtune never reads them.`,
    'Use the model\'s .safetensors files instead (most Hugging Face repos have them), or convert the checkpoint once with `safetensors.torch.save_file(torch.load(path, weights_only=True), "model.safetensors")` in a Python environment you trust.',
    { file, reason: 'pickle' },
  );
}

/** Reads the 8-byte length prefix; refuses absurd lengths before any allocation, and recognises
 *  PyTorch zip / pickle files (whose first bytes decode to a huge "length") by their magic. */
export function parseHeaderLength(file: string, first8: Uint8Array, fileSize: number): number {
  if (fileSize < 8 || first8.length < 8) {
    throw fail(file, 'header-too-small', `the file has ${fileSize} bytes, fewer than the 8-byte header length.`, { size: fileSize });
  }
  const n = new DataView(first8.buffer, first8.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_SIZE)) {
    if (first8[0] === 0x50 && first8[1] === 0x4b && first8[2] === 0x03 && first8[3] === 0x04) {
      throw pickleRefusal(file, 'is a zip archive (the PyTorch torch.save format), not safetensors');
    }
    if (first8[0] === 0x80 && first8[1] >= 2 && first8[1] <= 5) {
      throw pickleRefusal(file, 'is a Python pickle, not safetensors');
    }
    throw fail(file, 'header-too-large', `header length ${n} is over the ${MAX_HEADER_SIZE}-byte limit.`, { headerSize: n.toString() });
  }
  const len = Number(n);
  if (8 + len > fileSize) {
    throw fail(file, 'header-length', `header length ${len} runs past the end of the ${fileSize}-byte file (truncated?).`, { headerSize: len, size: fileSize });
  }
  return len;
}

/** Parses and validates the header JSON against a file of `fileSize` bytes. Pure: exposed for tests
 *  and for probing headers fetched by HTTP range request. */
export function parseHeader(file: string, headerBytes: Uint8Array, fileSize: number): SafetensorsHeader {
  const headerSize = headerBytes.length;
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(headerBytes);
  } catch {
    throw fail(file, 'header-utf8', 'the header is not valid UTF-8.');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw fail(file, 'header-json', `the header is not valid JSON (${(e as Error).message}).`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw fail(file, 'header-json', 'the header is not a JSON object.');
  }
  const dup = findDuplicateKey(text);
  if (dup !== null) {
    throw fail(file, 'header-duplicate-key', `the header has the key "${dup}" twice; duplicate keys are not allowed.`, { tensor: dup });
  }

  let metadata: Record<string, string> | null = null;
  const tensors: TensorInfo[] = [];
  for (const [name, entry] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      metadata = parseMetadata(file, entry);
      continue;
    }
    tensors.push(parseEntry(file, name, entry));
  }

  // The reference sorts by (begin, end) and then requires an exact tiling from 0.
  tensors.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let start = 0;
  let prev: string | null = null;
  for (const t of tensors) {
    if (t.end < t.begin) {
      throw fail(file, 'offsets', `tensor "${t.name}" has data_offsets [${t.begin}, ${t.end}] with end before begin.`, { tensor: t.name });
    }
    if (t.begin !== start) {
      const what = t.begin < start
        ? `overlaps the previous tensor${prev ? ` "${prev}"` : ''}, which ends at ${start}`
        : `leaves a gap after ${prev ? `"${prev}", which ends at ${start}` : 'the start of the data'}`;
      throw fail(file, 'offsets', `tensor "${t.name}" starts at ${t.begin} and ${what}; tensors must tile the data with no gaps or overlaps.`,
        { tensor: t.name, begin: t.begin, expectedBegin: start });
    }
    // Element count in BigInt: a crafted shape can overflow 2^53 long before it overflows u64.
    const elements = t.shape.reduce((acc, d) => acc * BigInt(d), 1n);
    const bits = elements * BigInt(dtypeBits(t.dtype));
    if (bits % 8n !== 0n) {
      throw fail(file, 'misaligned', `tensor "${t.name}" (${t.dtype}, shape [${t.shape}]) is not a whole number of bytes.`, { tensor: t.name });
    }
    if (BigInt(t.end - t.begin) !== bits / 8n) {
      throw fail(file, 'size-mismatch',
        `tensor "${t.name}" has ${t.end - t.begin} bytes but ${t.dtype} with shape [${t.shape}] needs ${bits / 8n}.`,
        { tensor: t.name, dtype: t.dtype, shape: t.shape, bytes: t.end - t.begin, expectedBytes: Number(bits / 8n) });
    }
    start = t.end;
    prev = t.name;
  }
  const expected = 8 + headerSize + start;
  if (expected > fileSize) {
    throw fail(file, 'truncated', `the header describes ${expected} bytes but the file has only ${fileSize} (truncated download?).`,
      { tensor: prev, size: fileSize, expectedSize: expected },
      'The file is incomplete. Download or copy it again.');
  }
  if (expected < fileSize) {
    throw fail(file, 'trailing-bytes', `the file has ${fileSize - expected} bytes after the last tensor; safetensors files must end exactly at the last tensor.`,
      { size: fileSize, expectedSize: expected });
  }
  return { headerSize, metadata, tensors };
}

function parseMetadata(file: string, entry: unknown): Record<string, string> | null {
  if (entry === null) return null; // Option<HashMap> in the reference: null is "no metadata"
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
    throw fail(file, 'metadata', '__metadata__ must be an object of strings.');
  }
  for (const [k, v] of Object.entries(entry)) {
    if (typeof v !== 'string') throw fail(file, 'metadata', `__metadata__ value for "${k}" is not a string.`, { field: k });
  }
  return { ...(entry as Record<string, string>) };
}

function isIndex(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function parseEntry(file: string, name: string, entry: unknown): TensorInfo {
  const bad = (what: string) => fail(file, 'tensor-entry', `tensor "${name}": ${what}.`, { tensor: name });
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw bad('entry is not an object');
  const e = entry as Record<string, unknown>;
  // Extra fields are ignored, as serde does for TensorInfo (no deny_unknown_fields).
  if (typeof e.dtype !== 'string') throw bad('dtype is missing');
  if (!DTYPE_BITS.has(e.dtype)) {
    throw fail(file, 'dtype', `tensor "${name}" has unknown dtype "${e.dtype}".`, { tensor: name, dtype: e.dtype },
      `Known dtypes: ${DTYPE_TABLE.map(([d]) => d).join(', ')}. Re-save the file with a current safetensors version.`);
  }
  if (!Array.isArray(e.shape) || !e.shape.every(isIndex)) throw bad('shape must be a list of non-negative integers');
  const off = e.data_offsets;
  if (!Array.isArray(off) || off.length !== 2 || !isIndex(off[0]) || !isIndex(off[1])) {
    throw fail(file, 'offsets', `tensor "${name}": data_offsets must be two non-negative integers [begin, end].`, { tensor: name });
  }
  return { name, dtype: e.dtype as DType, shape: e.shape as number[], begin: off[0], end: off[1] };
}

/** First key that appears twice in one JSON object of `text` (already known to be valid JSON), or
 *  null. JSON.parse keeps the last duplicate silently; we refuse instead. */
export function findDuplicateKey(text: string): string | null {
  const stack: (Set<string> | null)[] = []; // null frame = array
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      let j = i + 1;
      while (text.charCodeAt(j) !== 0x22) j += text.charCodeAt(j) === 0x5c ? 2 : 1;
      const top = stack[stack.length - 1];
      if (expectKey && top) {
        const key = JSON.parse(text.slice(i, j + 1)) as string;
        if (top.has(key)) return key;
        top.add(key);
        expectKey = false;
      }
      i = j;
    } else if (c === 0x7b /* { */) {
      stack.push(new Set());
      expectKey = true;
    } else if (c === 0x5b /* [ */) {
      stack.push(null);
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
    } else if (c === 0x2c /* , */) {
      expectKey = stack[stack.length - 1] instanceof Set;
    }
  }
  return null;
}

/** An opened safetensors file: the validated header, and tensor reads on demand. */
export class SafetensorsFile {
  readonly name: string;
  readonly source: ByteSource;
  readonly metadata: Record<string, string> | null;
  /** In file order. */
  readonly tensors: readonly TensorInfo[];
  private readonly byName: Map<string, TensorInfo>;
  private readonly dataStart: number;

  private constructor(source: ByteSource, header: SafetensorsHeader) {
    this.name = source.name;
    this.source = source;
    this.metadata = header.metadata;
    this.tensors = header.tensors;
    this.byName = new Map(header.tensors.map((t) => [t.name, t]));
    this.dataStart = 8 + header.headerSize;
  }

  /** Reads and validates the header only (two small reads). */
  static async open(source: ByteSource): Promise<SafetensorsFile> {
    const first = await source.read(0, Math.min(8, source.size));
    const n = parseHeaderLength(source.name, first, source.size);
    const headerBytes = await source.read(8, n);
    if (headerBytes.length !== n) throw shortRead(source.name, 8, n, headerBytes.length);
    return new SafetensorsFile(source, parseHeader(source.name, headerBytes, source.size));
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  info(name: string): TensorInfo {
    const t = this.byName.get(name);
    if (!t) {
      throw new ModelFileError(`${this.name}: no tensor named "${name}".`, 'The file does not contain this tensor; check that it belongs to this model.',
        { file: this.name, tensor: name, reason: 'missing-tensor' });
    }
    return t;
  }

  /** The raw little-endian bytes of one tensor, in a fresh buffer. */
  async readBytes(name: string): Promise<Uint8Array> {
    const t = this.info(name);
    const len = t.end - t.begin;
    const bytes = await this.source.read(this.dataStart + t.begin, len);
    if (bytes.length !== len) throw shortRead(this.name, this.dataStart + t.begin, len, bytes.length);
    return bytes;
  }

  /** One tensor as f32, converting F16 / BF16 / F64. Other dtypes are refused with the tensor named. */
  async readFloat32(name: string): Promise<Float32Array> {
    const t = this.info(name);
    if (!FLOAT_DTYPES.includes(t.dtype)) {
      throw new ModelFileError(
        `${this.name}: tensor "${name}" has dtype ${t.dtype}, which cannot be read as floating point.`,
        `Supported weight dtypes are ${FLOAT_DTYPES.join(', ')}. Pre-quantized (int8/fp8/4-bit) checkpoints are not supported; use the original 16/32-bit model.`,
        { file: this.name, tensor: name, dtype: t.dtype, reason: 'unsupported-dtype' },
      );
    }
    return toFloat32(t.dtype, await this.readBytes(name));
  }
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Converts little-endian F32 / F16 / BF16 / F64 bytes to a Float32Array (may be a view of `bytes`). */
export function toFloat32(dtype: DType, bytes: Uint8Array): Float32Array {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dtype === 'F32') {
    if (LITTLE_ENDIAN && bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
    const out = new Float32Array(bytes.byteLength / 4);
    for (let i = 0; i < out.length; i++) out[i] = dv.getFloat32(4 * i, true);
    return out;
  }
  if (dtype === 'F64') {
    const out = new Float32Array(bytes.byteLength / 8);
    for (let i = 0; i < out.length; i++) out[i] = dv.getFloat64(8 * i, true);
    return out;
  }
  const n = bytes.byteLength / 2;
  if (dtype === 'BF16') {
    // bf16 is the top half of an f32: shifting the bits up is exact, no rounding involved.
    const out = new Uint32Array(n);
    for (let i = 0; i < n; i++) out[i] = dv.getUint16(2 * i, true) << 16;
    return new Float32Array(out.buffer);
  }
  if (dtype === 'F16') {
    const table = f16Table();
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = table[dv.getUint16(2 * i, true)];
    return out;
  }
  throw new ModelFileError(`cannot convert ${dtype} to f32`, 'This is a bug in webtune.', { dtype });
}

let F16_TABLE: Float32Array | null = null;
/** All 65536 half values as f32 (256 KiB, built once): a lookup beats bit twiddling per element. */
function f16Table(): Float32Array {
  if (F16_TABLE) return F16_TABLE;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) t[h] = f16BitsToNumber(h);
  F16_TABLE = t;
  return t;
}

export function f16BitsToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24; // subnormal (and signed zero)
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

// ---------------------------------------------------------------------------------------------
// Writer

export interface TensorToWrite {
  dtype: DType;
  shape: readonly number[];
  /** Little-endian element data (any typed array or a byte view); its byte length must match. */
  data: ArrayBufferView;
}

/** What planning needs of a tensor: its dtype, shape and byte length. A streaming writer passes
 *  `{ byteLength }` for data it will read only when the tensor's turn comes. */
export interface TensorLayout {
  dtype: DType;
  shape: readonly number[];
  data: { readonly byteLength: number };
}

export interface SafetensorsPlan<T extends TensorLayout = TensorToWrite> {
  /** The 8-byte length followed by the padded header. */
  head: Uint8Array;
  /** Tensors in the order their bytes follow the header. */
  order: { name: string; tensor: T }[];
  /** Total file size. */
  size: number;
}

const utf8 = new TextEncoder();

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

/** Lays out a file exactly as the Python/Rust library does, without touching tensor data, so a
 *  caller can stream the tensors after `head` in `order` (large files) or use writeSafetensors. */
export function planSafetensors<T extends TensorLayout = TensorToWrite>(
  tensors: Record<string, T> | Iterable<readonly [string, T]>,
  metadata: Record<string, string> | null = { format: 'pt' },
): SafetensorsPlan<T> {
  const entries = Symbol.iterator in tensors ? [...(tensors as Iterable<readonly [string, T]>)] : Object.entries(tensors);
  const seen = new Set<string>();
  const keyed = entries.map(([name, tensor]) => {
    const bad = (what: string) => new ModelFileError(`Cannot write tensor "${name}": ${what}.`, 'This is a bug in the caller of writeSafetensors.', { tensor: name });
    if (name === '__metadata__' || seen.has(name)) throw bad('the name is reserved or repeated');
    seen.add(name);
    if (!DTYPE_BITS.has(tensor.dtype)) throw bad(`unknown dtype ${tensor.dtype}`);
    if (!tensor.shape.every(isIndex)) throw bad(`bad shape [${tensor.shape}]`);
    const bits = tensor.shape.reduce((a, d) => a * d, 1) * dtypeBits(tensor.dtype);
    if (bits % 8 !== 0 || bits / 8 !== tensor.data.byteLength) {
      throw bad(`${tensor.data.byteLength} bytes of data for ${tensor.dtype} [${tensor.shape}] (needs ${bits / 8})`);
    }
    return { name, tensor, nameBytes: utf8.encode(name), rank: DTYPE_RANK.get(tensor.dtype)! };
  });
  // Rust: right.dtype().cmp(&left.dtype()).then(lname.cmp(rname)), names compared as UTF-8 bytes.
  keyed.sort((a, b) => b.rank - a.rank || compareBytes(a.nameBytes, b.nameBytes));

  let json = '{';
  const parts: string[] = [];
  if (metadata !== null) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new ModelFileError(`Cannot write metadata "${k}": values must be strings.`, 'This is a bug in the caller.', { field: k });
    }
    parts.push(`"__metadata__":${JSON.stringify(metadata)}`);
  }
  let offset = 0;
  for (const { name, tensor } of keyed) {
    const end = offset + tensor.data.byteLength;
    // Same text as serde_json: compact, field order dtype/shape/data_offsets, same string escapes.
    parts.push(`${JSON.stringify(name)}:{"dtype":"${tensor.dtype}","shape":[${tensor.shape.join(',')}],"data_offsets":[${offset},${end}]}`);
    offset = end;
  }
  json += parts.join(',') + '}';
  const headerText = utf8.encode(json);
  const padded = Math.ceil(headerText.length / 8) * 8;
  if (padded > MAX_HEADER_SIZE) {
    throw new ModelFileError(`Cannot write a safetensors header of ${padded} bytes (limit ${MAX_HEADER_SIZE}).`, 'Write fewer tensors per file.', {});
  }
  const head = new Uint8Array(8 + padded).fill(0x20, 8);
  new DataView(head.buffer).setBigUint64(0, BigInt(padded), true);
  head.set(headerText, 8);
  return { head, order: keyed.map(({ name, tensor }) => ({ name, tensor })), size: 8 + padded + offset };
}

/** A whole safetensors file in memory, byte-identical to `safetensors.torch.save_file(tensors,
 *  metadata=metadata)` (metadata with more than one key: Rust writes a HashMap in random order,
 *  we write insertion order). PEFT and transformers write metadata {"format": "pt"}, the default. */
export function writeSafetensors(
  tensors: Record<string, TensorToWrite> | Iterable<readonly [string, TensorToWrite]>,
  metadata: Record<string, string> | null = { format: 'pt' },
): Uint8Array {
  const plan = planSafetensors(tensors, metadata);
  const out = new Uint8Array(plan.size);
  out.set(plan.head, 0);
  let at = plan.head.length;
  for (const { tensor } of plan.order) {
    out.set(new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength), at);
    at += tensor.data.byteLength;
  }
  return out;
}
