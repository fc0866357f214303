// Fuzzing the safetensors reader and writer (src/io/safetensors.ts): random tensors, dtypes and
// metadata round-trip byte for byte; damaged files (bytes flipped, inserted, cut; headers with
// random offsets, shapes, dtypes and lengths) open cleanly or are refused with a ModelFileError that
// names the file, and a file that opens reads back every tensor within its bounds.
import fc from 'fast-check';
import { expect } from 'vitest';
import { bytesSource } from '../io/byte-source.ts';
import { FLOAT_DTYPES, SafetensorsFile, dtypeBits, parseHeaderLength, writeSafetensors, type DType, type TensorToWrite } from '../io/safetensors.ts';
import { concat, expectTyped, fuzz, mutatedBytes, nastyString, refusedOr } from './harness.ts';

const DTYPES: DType[] = ['BOOL', 'F4', 'F6_E2M3', 'F6_E3M2', 'U8', 'I8', 'F8_E5M2', 'F8_E4M3', 'F8_E8M0', 'F8_E4M3FNUZ', 'F8_E5M2FNUZ',
  'I16', 'U16', 'F16', 'BF16', 'I32', 'U32', 'F32', 'C64', 'F64', 'I64', 'U64'];
const FILE = 'fuzz.safetensors';

/** A tensor of a random dtype and shape (rank 0..4) with random bytes; sub-byte dtypes get a last
 *  dimension of 8 so their size is whole bytes, as the format requires. */
const tensor: fc.Arbitrary<TensorToWrite> = fc
  .tuple(fc.constantFrom(...DTYPES), fc.array(fc.nat(5), { maxLength: 4 }))
  .chain(([dtype, dims]) => {
    const shape = (dims.reduce((a, d) => a * d, 1) * dtypeBits(dtype)) % 8 === 0 ? dims : [...dims, 8];
    const bytes = (shape.reduce((a, d) => a * d, 1) * dtypeBits(dtype)) / 8;
    return fc.uint8Array({ minLength: bytes, maxLength: bytes }).map((data) => ({ dtype, shape, data }));
  });

const tensors = fc.uniqueArray(fc.tuple(nastyString.filter((n) => n !== '__metadata__'), tensor), { selector: ([n]) => n, maxLength: 6 });
const metadata = fc.option(fc.dictionary(nastyString, nastyString, { maxKeys: 4 }), { nil: null });

/** What any successfully opened file must satisfy, whatever bytes it came from. */
async function checkOpened(f: SafetensorsFile, size: number): Promise<void> {
  let end = 0;
  for (const t of f.tensors) {
    expect(t.begin).toBe(end); // tiles the data section
    end = t.end;
    const bytes = await f.readBytes(t.name);
    expect(bytes.length).toBe(t.end - t.begin);
    if (FLOAT_DTYPES.includes(t.dtype)) {
      const n = t.shape.reduce((a, d) => a * d, 1);
      expect((await f.readFloat32(t.name)).length).toBe(n);
    }
  }
  expect(end).toBeLessThanOrEqual(size);
}

fuzz('safetensors round trip of random tensors, dtypes and metadata', fc.tuple(tensors, metadata), async ([list, meta]) => {
  const bytes = writeSafetensors(list, meta);
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  expect(n % 8).toBe(0);
  expect(bytes[8]).toBe(0x7b); // the README's "MUST begin with {"
  const f = await SafetensorsFile.open(bytesSource(FILE, bytes));
  expect(f.metadata).toEqual(meta === null ? null : { ...meta });
  expect(new Set(f.tensors.map((t) => t.name))).toEqual(new Set(list.map(([name]) => name)));
  for (const [name, t] of list) {
    const info = f.info(name);
    expect([info.dtype, info.shape]).toEqual([t.dtype, [...t.shape]]);
    expect(await f.readBytes(name)).toEqual(t.data);
  }
  await checkOpened(f, bytes.length);
  // Writing what was read gives the same bytes (the layout is a pure function of the content).
  const again = writeSafetensors(await Promise.all(f.tensors.map(async (t) => [t.name, { dtype: t.dtype, shape: t.shape, data: await f.readBytes(t.name) }] as const)), f.metadata);
  expect(again).toEqual(bytes);
});

const validFile = fc.tuple(tensors, metadata).map(([list, meta]) => writeSafetensors(list, meta));

fuzz('safetensors files with bytes flipped, inserted, deleted or cut', mutatedBytes(validFile), async (bytes) => {
  const f = await refusedOr(FILE, () => SafetensorsFile.open(bytesSource(FILE, bytes)));
  if (f) await checkOpened(f, bytes.length);
});

/** A header built from parts that are each sometimes wrong: offsets off by a little or a lot,
 *  shapes with huge or negative or fractional dimensions, unknown dtypes, non-object entries,
 *  metadata of the wrong type, and a length prefix that lies. */
const hostileHeader = fc.record({
  entries: fc.array(fc.tuple(nastyString, fc.oneof(
    { weight: 4, arbitrary: fc.record({
      dtype: fc.oneof(fc.constantFrom<unknown>(...DTYPES), fc.constantFrom<unknown>('f32', '', null, 7, 'F32 ')),
      shape: fc.oneof(fc.array(fc.nat(8), { maxLength: 4 }), fc.array(fc.constantFrom<unknown>(-1, 1.5, 2 ** 53, 2 ** 31, 1e308, '2', null), { maxLength: 4 }), fc.constant<unknown>(null)),
      data_offsets: fc.oneof(fc.tuple(fc.nat(300), fc.nat(300)), fc.array(fc.oneof(fc.integer(), fc.constant<unknown>(2 ** 64), fc.constant<unknown>(-0)), { maxLength: 3 }), fc.constant<unknown>('0,4')),
    }, { requiredKeys: [] }) },
    { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
  )), { maxLength: 5 }),
  metadata: fc.option(fc.oneof(fc.dictionary(nastyString, nastyString, { maxKeys: 2 }), fc.jsonValue({ maxDepth: 2 })), { nil: undefined }),
  lengthDelta: fc.oneof({ weight: 4, arbitrary: fc.constant(0n) }, { weight: 1, arbitrary: fc.bigInt({ min: -64n, max: 64n }) }, { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) }),
  pad: fc.constantFrom('', ' ', '   \n', '\t'),
  data: fc.uint8Array({ maxLength: 400 }),
});

fuzz('safetensors headers with random offsets, shapes, dtypes and length prefixes', hostileHeader, async (h) => {
  const obj: Record<string, unknown> = {};
  if (h.metadata !== undefined) obj.__metadata__ = h.metadata;
  for (const [k, v] of h.entries) Object.defineProperty(obj, k, { value: v, enumerable: true, writable: true, configurable: true });
  const json = new TextEncoder().encode(h.pad + JSON.stringify(obj) + h.pad);
  const prefix = new Uint8Array(8);
  const len = BigInt(json.length) + h.lengthDelta;
  new DataView(prefix.buffer).setBigUint64(0, BigInt.asUintN(64, len), true);
  const bytes = concat(prefix, json, h.data);
  const f = await refusedOr(FILE, () => SafetensorsFile.open(bytesSource(FILE, bytes)));
  if (f) await checkOpened(f, bytes.length);
});

fuzz('safetensors length prefix against any file size', fc.tuple(fc.uint8Array({ minLength: 0, maxLength: 8 }), fc.oneof(fc.nat(), fc.constant(Number.MAX_SAFE_INTEGER))), ([first8, size]) => {
  let n: number | undefined;
  try {
    n = parseHeaderLength(FILE, first8, size);
  } catch (e) {
    expectTyped(e, FILE);
    return;
  }
  expect(Number.isSafeInteger(n) && n >= 0 && 8 + n <= size).toBe(true);
});
