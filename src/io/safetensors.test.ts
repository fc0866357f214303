import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { ModelFileError } from '../errors.ts';
import { blobSource, bytesSource } from './byte-source.ts';
import { MAX_HEADER_SIZE, SafetensorsFile, f16BitsToNumber, findDuplicateKey, writeSafetensors } from './safetensors.ts';

const enc = new TextEncoder();

/** A safetensors file from a header (object or exact text) and a data section. */
function raw(header: object | string, data: Uint8Array | number = 0, n?: bigint): Uint8Array {
  const h = enc.encode(typeof header === 'string' ? header : JSON.stringify(header));
  const d = typeof data === 'number' ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + h.length + d.length);
  new DataView(out.buffer).setBigUint64(0, n ?? BigInt(h.length), true);
  out.set(h, 8);
  out.set(d, 8 + h.length);
  return out;
}

async function openBytes(bytes: Uint8Array, name = 'model.safetensors') {
  return SafetensorsFile.open(bytesSource(name, bytes));
}

async function rejection(bytes: Uint8Array, name = 'bad.safetensors'): Promise<ModelFileError> {
  const e = await openBytes(bytes, name).then(() => null, (err: unknown) => err);
  expect(e).toBeInstanceOf(ModelFileError);
  const err = e as ModelFileError;
  expect(err.details.file).toBe(name);
  expect(err.message).toContain(name);
  return err;
}

describe('safetensors writer', () => {
  test('matches the reference test vectors byte for byte (safetensors tensor.rs tests)', () => {
    // test_serialization: "attn.0", F32, [1,2,3], values 0..5, no metadata.
    const data = new Float32Array([0, 1, 2, 3, 4, 5]);
    expect([...writeSafetensors({ 'attn.0': { dtype: 'F32', shape: [1, 2, 3], data } }, null)]).toEqual([
      64, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 46, 48, 34, 58, 123, 34, 100,
      116, 121, 112, 101, 34, 58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34,
      58, 91, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116, 97, 95, 111, 102, 102, 115,
      101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 0, 0, 0, 0, 0, 0, 128, 63,
      0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64,
    ]);
    // test_serialization_forced_alignement: a shorter name, so 7 spaces of padding.
    const out = writeSafetensors({ attn0: { dtype: 'F32', shape: [1, 1, 2, 3], data } }, null);
    expect(out[0]).toBe(72);
    expect([...out.subarray(8 + 65, 8 + 72)]).toEqual([32, 32, 32, 32, 32, 32, 32]);
    // test_empty, without and with metadata.
    expect([...writeSafetensors({}, null)]).toEqual([8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32]);
    expect([...writeSafetensors({}, { framework: 'pt' })]).toEqual([
      40, 0, 0, 0, 0, 0, 0, 0, 123, 34, 95, 95, 109, 101, 116, 97, 100, 97, 116, 97, 95,
      95, 34, 58, 123, 34, 102, 114, 97, 109, 101, 119, 111, 114, 107, 34, 58, 34, 112,
      116, 34, 125, 125, 32, 32, 32, 32, 32,
    ]);
  });

  test('orders by the Rust Dtype enum descending, then name; metadata first; pads to 8', () => {
    const t = (dtype: 'F32' | 'U32' | 'I32' | 'BF16' | 'F16' | 'U8', n: number) => ({ dtype, shape: [n], data: new Uint8Array(n * ({ F32: 4, U32: 4, I32: 4, BF16: 2, F16: 2, U8: 1 }[dtype])) });
    const out = writeSafetensors({ u8: t('U8', 3), h: t('F16', 1), b: t('BF16', 1), i: t('I32', 1), z: t('F32', 1), a: t('F32', 2), u: t('U32', 1) });
    const expectedHeader = '{"__metadata__":{"format":"pt"},'
      + '"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"z":{"dtype":"F32","shape":[1],"data_offsets":[8,12]},'
      + '"u":{"dtype":"U32","shape":[1],"data_offsets":[12,16]},"i":{"dtype":"I32","shape":[1],"data_offsets":[16,20]},'
      + '"b":{"dtype":"BF16","shape":[1],"data_offsets":[20,22]},"h":{"dtype":"F16","shape":[1],"data_offsets":[22,24]},'
      + '"u8":{"dtype":"U8","shape":[3],"data_offsets":[24,27]}}';
    const padded = expectedHeader + ' '.repeat((8 - (expectedHeader.length % 8)) % 8);
    const n = Number(new DataView(out.buffer).getBigUint64(0, true));
    expect(n).toBe(padded.length);
    expect(n % 8).toBe(0);
    expect(new TextDecoder().decode(out.subarray(8, 8 + n))).toBe(padded);
    expect(out.length).toBe(8 + n + 27);
  });

  test('round trip: F32/F16/BF16/U8/I32/I64 come back with the same bytes and values', async () => {
    const f32 = new Float32Array([1.5, -2.25, 3e-5, 65504]);
    const f16 = new Uint16Array([0x3c00, 0xc000, 0x0001, 0x7bff]); // 1, -2, smallest subnormal, 65504
    const bf16 = new Uint16Array([0x3f80, 0xc0a0]); // 1, -5
    const i64 = new BigInt64Array([-1n, 1n << 40n]);
    const bytes = writeSafetensors({
      w: { dtype: 'F32', shape: [2, 2], data: f32 },
      h: { dtype: 'F16', shape: [4], data: f16 },
      b: { dtype: 'BF16', shape: [2], data: bf16 },
      ids: { dtype: 'I64', shape: [2], data: i64 },
      m: { dtype: 'U8', shape: [3], data: new Uint8Array([1, 2, 3]) },
      e: { dtype: 'I32', shape: [0, 4], data: new Int32Array(0) },
    });
    const f = await openBytes(bytes);
    expect(f.metadata).toEqual({ format: 'pt' });
    expect(f.info('w').shape).toEqual([2, 2]);
    expect([...(await f.readFloat32('w'))]).toEqual([...f32]);
    expect([...(await f.readFloat32('h'))]).toEqual([1, -2, 2 ** -24, 65504]);
    expect([...(await f.readFloat32('b'))]).toEqual([1, -5]);
    const idBytes = await f.readBytes('ids');
    expect([...new BigInt64Array(idBytes.buffer, idBytes.byteOffset, 2)]).toEqual([-1n, 1n << 40n]);
    expect([...(await f.readBytes('m'))]).toEqual([1, 2, 3]);
    expect((await f.readBytes('e')).length).toBe(0);
    // Blob-backed source reads the same bytes.
    const viaBlob = await SafetensorsFile.open(blobSource(new Blob([bytes as Uint8Array<ArrayBuffer>]), 'blob.safetensors'));
    expect([...(await viaBlob.readFloat32('h'))]).toEqual([1, -2, 2 ** -24, 65504]);
  });

  test('F16 and BF16 convert exactly as PyTorch does (fixture from scripts/make-io-fixtures.py)', async () => {
    const bytes = new Uint8Array(readFileSync(new URL('../../fixtures/io/torch-dtypes.safetensors', import.meta.url)));
    const expected = JSON.parse(readFileSync(new URL('../../fixtures/io/torch-expected.json', import.meta.url), 'utf8')) as Record<string, (number | string)[]>;
    const f = await openBytes(bytes, 'torch-dtypes.safetensors');
    for (const name of ['f32', 'f16', 'bf16', 'f16_matrix']) {
      const want = expected[name].map((v) => (v === 'inf' ? Infinity : v === '-inf' ? -Infinity : (v as number)));
      const got = [...(await f.readFloat32(name))];
      expect(got.length).toBe(want.length);
      got.forEach((g, i) => expect(Object.is(g, want[i]) || g === want[i], `${name}[${i}]: ${g} vs ${want[i]}`).toBe(true));
    }
    expect(f.info('f16_matrix').shape).toEqual([3, 5]);
  });

  test('f16 decoding covers zero, subnormals, inf and NaN', () => {
    expect(Object.is(f16BitsToNumber(0x8000), -0)).toBe(true);
    expect(f16BitsToNumber(0x03ff)).toBe(1023 * 2 ** -24);
    expect(f16BitsToNumber(0x7c00)).toBe(Infinity);
    expect(f16BitsToNumber(0xfc00)).toBe(-Infinity);
    expect(f16BitsToNumber(0x7e00)).toBeNaN();
    expect(f16BitsToNumber(0x3555)).toBe(0.333251953125);
  });
});

describe('safetensors reader refuses bad files with a typed error naming the file and tensor', () => {
  const good = { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F16', shape: [2], data_offsets: [8, 12] } };

  test('header length over 100 MB', async () => {
    const e = await rejection(raw('{}', 0, BigInt(MAX_HEADER_SIZE + 1)));
    expect(e.details.reason).toBe('header-too-large');
    expect((await rejection(raw('{}', 0, 0xffffffffffffffffn))).details.reason).toBe('header-too-large');
  });

  test('fewer than 8 bytes, and a header length past the end of the file', async () => {
    expect((await rejection(new Uint8Array(5))).details.reason).toBe('header-too-small');
    expect((await rejection(raw('{}', 0, 100n))).details.reason).toBe('header-length');
  });

  test('truncated data section names the last tensor', async () => {
    const full = raw(good, 12);
    const e = await rejection(full.subarray(0, full.length - 3));
    expect(e.details.reason).toBe('truncated');
    expect(e.details.tensor).toBe('b');
  });

  test('trailing bytes after the last tensor (polyglot guard)', async () => {
    expect((await rejection(raw(good, 13))).details.reason).toBe('trailing-bytes');
  });

  test('offsets out of range, overlapping, with a gap, reversed', async () => {
    const outOfRange = { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F16', shape: [2], data_offsets: [8, 1_000_000] } };
    const e1 = await rejection(raw(outOfRange, 12));
    expect(e1.details.tensor).toBe('b');
    const overlap = { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } };
    const e2 = await rejection(raw(overlap, 12));
    expect(e2.details.reason).toBe('offsets');
    expect(e2.details.tensor).toBe('b');
    expect(e2.message).toContain('overlaps');
    const gap = { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F16', shape: [2], data_offsets: [10, 14] } };
    const e3 = await rejection(raw(gap, 14));
    expect(e3.details.tensor).toBe('b');
    expect(e3.message).toContain('gap');
    const notFromZero = { a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } };
    expect((await rejection(raw(notFromZero, 8))).details.tensor).toBe('a');
    const negative = { a: { dtype: 'F32', shape: [1], data_offsets: [-4, 0] } };
    expect((await rejection(raw(negative, 0))).details.reason).toBe('offsets');
  });

  test('shape x dtype size mismatch, misaligned F4, overflowing shape', async () => {
    const e = await rejection(raw({ w: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 12] } }, 12));
    expect(e.details).toMatchObject({ reason: 'size-mismatch', tensor: 'w', expectedBytes: 16 });
    expect((await rejection(raw({ w: { dtype: 'F4', shape: [3], data_offsets: [0, 2] } }, 2))).details.reason).toBe('misaligned');
    const huge = { w: { dtype: 'F32', shape: [2 ** 40, 2 ** 40], data_offsets: [0, 4] } };
    expect((await rejection(raw(huge, 4))).details.reason).toBe('size-mismatch');
  });

  test('unknown dtype at open; known but non-float dtype when read as f32', async () => {
    const e = await rejection(raw({ w: { dtype: 'Q4_K', shape: [1], data_offsets: [0, 1] } }, 1));
    expect(e.details).toMatchObject({ reason: 'dtype', tensor: 'w' });
    const f = await openBytes(raw({ w: { dtype: 'F8_E4M3', shape: [4], data_offsets: [0, 4] } }, 4), 'fp8.safetensors');
    const err = await f.readFloat32('w').catch((x: unknown) => x);
    expect(err).toBeInstanceOf(ModelFileError);
    expect((err as ModelFileError).details).toMatchObject({ file: 'fp8.safetensors', tensor: 'w', reason: 'unsupported-dtype' });
    expect((await f.readBytes('w')).length).toBe(4); // still readable raw
  });

  test('invalid UTF-8, invalid JSON, non-object, duplicate keys, bad metadata', async () => {
    const badUtf8 = raw('{}');
    badUtf8[9] = 0xff;
    const withBad = new Uint8Array(8 + 3);
    new DataView(withBad.buffer).setBigUint64(0, 3n, true);
    withBad.set([0x7b, 0xff, 0x7d], 8);
    expect((await rejection(withBad)).details.reason).toBe('header-utf8');
    expect((await rejection(raw('{"a": '))).details.reason).toBe('header-json');
    expect((await rejection(raw('[1,2]'))).details.reason).toBe('header-json');
    const dup = '{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}';
    const e = await rejection(raw(dup, 1));
    expect(e.details).toMatchObject({ reason: 'header-duplicate-key', tensor: 'a' });
    expect((await rejection(raw({ __metadata__: { format: 1 } })) ).details.reason).toBe('metadata');
  });

  test('PyTorch zip and pickle files are recognised by their magic bytes', async () => {
    const zip = new Uint8Array([0x50, 0x4b, 0x03, 0x04, 0x14, 0, 0, 0, 0, 0, 0, 0]);
    const e = await rejection(zip, 'model.safetensors');
    expect(e.details.reason).toBe('pickle');
    expect(e.message).toMatch(/execute arbitrary code/);
    const pickle = new Uint8Array([0x80, 0x02, 0x63, 0x63, 0x63, 0x63, 0x63, 0x63, 0]);
    expect((await rejection(pickle)).details.reason).toBe('pickle');
  });

  test('accepts what the reference accepts: whitespace-padded headers, null metadata, empty tensors, any key order', async () => {
    expect((await openBytes(raw('\t\n{}\r '))).tensors).toEqual([]);
    expect((await openBytes(raw('{"__metadata__":null}'))).metadata).toBeNull();
    // Entries listed out of offset order, and an extra field serde ignores.
    const f = await openBytes(raw('{"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":1}}', new Uint8Array([7, 8, 9])));
    expect(f.tensors.map((t) => t.name)).toEqual(['a', 'b']);
    expect([...(await f.readBytes('b'))]).toEqual([8, 9]);
    await expect(f.readBytes('nope')).rejects.toMatchObject({ details: { tensor: 'nope', reason: 'missing-tensor' } });
  });

  test('a source that returns short reads (file changed under us) is a typed error', async () => {
    const bytes = raw(good, 12);
    const src = bytesSource('shrinking.safetensors', bytes);
    const f = await SafetensorsFile.open(src);
    const lying = { ...src, read: async (o: number, l: number) => (await src.read(o, l)).subarray(0, Math.max(0, l - 1)) };
    const g = await SafetensorsFile.open({ ...src, read: async (o: number, l: number) => (o === 0 || o === 8 ? src.read(o, l) : lying.read(o, l)) });
    expect(f.tensors.length).toBe(2);
    await expect(g.readBytes('a')).rejects.toBeInstanceOf(ModelFileError);
  });

  test('findDuplicateKey looks inside nested objects and ignores keys in strings and arrays', () => {
    expect(findDuplicateKey('{"a":{"x":1,"x":2}}')).toBe('x');
    expect(findDuplicateKey('{"a":["a","a"],"b":"\\"a\\"","c":{"a":1}}')).toBeNull();
    expect(findDuplicateKey('{"k\\u0041":1,"kA":2}')).toBe('kA');
  });
});
