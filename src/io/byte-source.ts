// Random-access byte sources. Model files are far larger than anything we want on the JS heap, so
// every reader in src/io asks for exactly the bytes it needs (an 8-byte length, a header, one
// tensor) through this interface. The browser gets Blob/File (a dropped folder, an OPFS file, a
// fetched shard); Node gets a file handle (src/node/fs-source.ts); tests use bytes in memory.

import { ModelFileError } from '../errors.ts';

export interface ByteSource {
  /** The file name shown in errors (a dropped file's name or a path). */
  readonly name: string;
  /** Total size in bytes. */
  readonly size: number;
  /** Exactly `length` bytes starting at `offset`, in a fresh buffer the caller may keep or mutate.
   *  Rejects (ModelFileError) when the range is not inside the file. */
  read(offset: number, length: number): Promise<Uint8Array>;
}

/** Checks a range against a source's size; every implementation calls this before reading so a
 *  hostile offset surfaces as a typed error, not a short read or a RangeError. */
export function checkRange(source: { name: string; size: number }, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > source.size) {
    throw new ModelFileError(
      `${source.name}: cannot read ${length} bytes at offset ${offset}; the file has ${source.size} bytes (truncated?).`,
      'The file is shorter than its header says. Download or copy it again.',
      { file: source.name, offset, length, size: source.size },
    );
  }
}

/** A Blob or File (browser, Web Worker, and Node >= 20 which has Blob too). Blob.slice is lazy, so
 *  only the requested range is ever materialised. */
export function blobSource(blob: Blob, name?: string): ByteSource {
  const fileName = name ?? ((blob as Partial<File>).name || 'blob');
  return {
    name: fileName,
    size: blob.size,
    async read(offset: number, length: number): Promise<Uint8Array> {
      checkRange({ name: fileName, size: blob.size }, offset, length);
      const buf = await blob.slice(offset, offset + length).arrayBuffer();
      if (buf.byteLength !== length) throw shortRead(fileName, offset, length, buf.byteLength);
      return new Uint8Array(buf);
    },
  };
}

/** Bytes already in memory (tests, files we just wrote, small downloads). Reads return copies so a
 *  caller that keeps a Float32Array view of a tensor never aliases the whole file. */
export function bytesSource(name: string, bytes: Uint8Array): ByteSource {
  return {
    name,
    size: bytes.length,
    async read(offset: number, length: number): Promise<Uint8Array> {
      checkRange({ name, size: bytes.length }, offset, length);
      return bytes.slice(offset, offset + length);
    },
  };
}

export function shortRead(name: string, offset: number, wanted: number, got: number): ModelFileError {
  return new ModelFileError(
    `${name}: asked for ${wanted} bytes at offset ${offset} but got ${got}; the file changed or was truncated while reading.`,
    'Do not modify model files while they load; copy them again if they were damaged.',
    { file: name, offset, length: wanted, got },
  );
}

/** Largest JSON side file (config.json, model.safetensors.index.json, adapter_config.json) we will
 *  read whole. The same cap as huggingface.js's MAX_CONFIG_LENGTH: real ones are kilobytes, and a
 *  crafted index with millions of entries should be refused before JSON.parse sees it. */
export const MAX_JSON_BYTES = 10_000_000;

/** Reads a small JSON file whole, with a size cap, strict UTF-8 and a BOM tolerated. Errors are
 *  built by `fail` so adapter files can raise AdapterFileError and model files ModelFileError. */
export async function readJsonSource(
  source: ByteSource,
  fail: (message: string, hint: string, details: Record<string, unknown>) => Error = (m, h, d) => new ModelFileError(m, h, d),
  maxBytes = MAX_JSON_BYTES,
): Promise<unknown> {
  if (source.size > maxBytes) {
    throw fail(`${source.name} is ${source.size} bytes; JSON files over ${maxBytes} bytes are refused.`,
      'This is not a normal configuration file; check that the right file was chosen.', { file: source.name, size: source.size });
  }
  const bytes = await source.read(0, source.size);
  return parseJsonBytes(source.name, bytes, fail);
}

export function parseJsonBytes(
  name: string,
  bytes: Uint8Array,
  fail: (message: string, hint: string, details: Record<string, unknown>) => Error = (m, h, d) => new ModelFileError(m, h, d),
): unknown {
  let text: string;
  try {
    // fatal: a malformed byte is an error, not a silent U+FFFD; the default ignoreBOM=false drops a BOM.
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw fail(`${name} is not valid UTF-8 text.`, 'The file is damaged or not a JSON file.', { file: name });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw fail(`${name} is not valid JSON: ${(e as Error).message}`, 'The file is damaged or not a JSON file.', { file: name });
  }
}
