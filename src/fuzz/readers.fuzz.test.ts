// Fuzzing the dataset readers (src/data/readers.ts with decode.ts and csv.ts): JSON, JSONL, CSV/TSV,
// Parquet and text. Valid files round-trip (what was written is what is read, row for row); damaged
// and random files are read to the end or refused with a DatasetError naming the file, and every
// problem reported for a bad row names the file too. Small line limits are drawn sometimes, so the
// "row too long" paths run as often as the ordinary ones.
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { writeParquet } from '../testing/parquet-fixture.ts';
import { openDataset } from '../data/readers.ts';
import type { SourceRecord } from '../data/types.ts';
import { DatasetError } from '../errors.ts';
import { concat, fuzz, mutatedBytes, refusedOr } from './harness.ts';

const enc = new TextEncoder();
const limits = fc.oneof(
  { weight: 3, arbitrary: fc.constant(undefined) },
  { weight: 1, arbitrary: fc.record({ maxLineChars: fc.integer({ min: 1, max: 200 }), maxWholeChars: fc.integer({ min: 1, max: 4000 }) }) },
);

/** Opens and reads a file to the end; a refusal must be a DatasetError naming it. */
async function readAll(name: string, data: Uint8Array | string, lim?: { maxLineChars: number; maxWholeChars: number }): Promise<SourceRecord[] | undefined> {
  return refusedOr(name, async () => {
    const o = await openDataset({ name, data }, { limits: lim });
    const out: SourceRecord[] = [];
    for await (const r of o.records) {
      expect(Number.isSafeInteger(r.row) && r.row >= 1).toBe(true);
      out.push(r);
    }
    for (const p of o.problems) {
      expect(p.file).toBe(name);
      expect(p.message).toContain(name);
    }
    return out;
  }).catch((e: unknown) => {
    // refusedOr rethrows anything untyped; a DatasetError naming another place is also a failure.
    if (e instanceof DatasetError) throw new Error(`DatasetError without the file name: ${e.message}`);
    throw e;
  });
}

/** Text that is valid UTF-8 in any script, with the characters parsers trip on. */
const cell = fc.oneof(
  { weight: 4, arbitrary: fc.string({ unit: 'grapheme', maxLength: 12 }) },
  { weight: 1, arbitrary: fc.constantFrom('', ' ', '"', '""', ',', ';', '\t', '\n', '\r\n', '\r', 'a"b', ' lead', 'trail ', '\u00a0', 'Thủ đô', '東京', '🙂') },
);
const record = fc.dictionary(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 8 }), cell, { minKeys: 1, maxKeys: 4 });

fuzz('JSON array of records round trip', fc.tuple(fc.array(record, { minLength: 1, maxLength: 8 }), fc.constantFrom('', '\ufeff'), fc.constantFrom(0, 2)), async ([rows, bom, indent]) => {
  const got = await readAll('data.json', bom + JSON.stringify(rows, null, indent));
  expect(got?.map((r) => r.value)).toEqual(rows);
});

fuzz('JSONL round trip', fc.tuple(fc.array(record, { minLength: 1, maxLength: 8 }), fc.constantFrom('\n', '\r\n'), fc.boolean()), async ([rows, eol, trailing]) => {
  const text = rows.map((r) => JSON.stringify(r)).join(eol) + (trailing ? eol : '');
  const got = await readAll('data.jsonl', enc.encode(text));
  expect(got?.map((r) => r.value)).toEqual(rows);
  expect(got?.map((r) => r.line)).toEqual(rows.map((_, i) => i + 1));
});

/** RFC 4180 quoting: every field quoted, quotes doubled. */
const csvLine = (fields: string[], d: string) => fields.map((f) => `"${f.replaceAll('"', '""')}"`).join(d);

fuzz('CSV and TSV round trip (quoted fields with delimiters, quotes and line breaks)', fc.tuple(
  fc.uniqueArray(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 8 }).filter((h) => h.trim() === h && h.length > 0), { minLength: 1, maxLength: 4 }),
  fc.constantFrom(',', '\t'),
  fc.constantFrom('\n', '\r\n'),
).chain(([header, d, eol]) => fc.tuple(fc.constant(header), fc.constant(d), fc.constant(eol), fc.array(fc.array(cell, { minLength: header.length, maxLength: header.length }), { minLength: 1, maxLength: 6 }))),
async ([header, d, eol, rows]) => {
  const text = [csvLine(header, d), ...rows.map((r) => csvLine(r, d))].join(eol) + eol;
  const got = await readAll(d === '\t' ? 'data.tsv' : 'data.csv', enc.encode(text));
  expect(got?.map((r) => r.value)).toEqual(rows.map((r) => Object.fromEntries(header.map((h, k) => [h, r[k]]))));
});

fuzz('text paragraphs round trip', fc.array(fc.array(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 20 }).filter((l) => l.trim().length > 0 && !/[\r\n]/.test(l)), { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 5 }), async (paras) => {
  const text = paras.map((p) => p.join('\n')).join('\n\n');
  const got = await readAll('notes.txt', enc.encode(text));
  expect(got?.map((r) => r.value)).toEqual(paras.map((p) => ({ text: p.join('\n') })));
});

fuzz('Parquet round trip', fc.tuple(
  fc.uniqueArray(fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 8 }), { minLength: 1, maxLength: 3 }),
  fc.nat(5),
).chain(([cols, n]) => fc.tuple(fc.constant(cols), fc.array(fc.array(fc.string({ unit: 'grapheme', maxLength: 10 }), { minLength: cols.length, maxLength: cols.length }), { minLength: n + 1, maxLength: n + 1 }))),
async ([cols, rows]) => {
  const got = await readAll('data.parquet', writeParquet(cols, rows));
  expect(got?.map((r) => r.value)).toEqual(rows.map((r) => Object.fromEntries(cols.map((c, k) => [c, r[k]]))));
});

// ---- damaged and random input -------------------------------------------------------------------

const NAMES = ['data.json', 'data.jsonl', 'data.csv', 'data.tsv', 'data.txt', 'data.parquet', 'data'];

/** A valid file of some format, as bytes, with a name that may or may not match its format. */
const validFile = fc.oneof(
  fc.array(record, { minLength: 1, maxLength: 4 }).map((rows) => enc.encode(JSON.stringify(rows))),
  fc.array(record, { minLength: 1, maxLength: 4 }).map((rows) => enc.encode(rows.map((r) => JSON.stringify(r)).join('\n'))),
  fc.array(fc.array(cell, { minLength: 2, maxLength: 2 }), { minLength: 1, maxLength: 4 }).map((rows) => enc.encode(['"a","b"', ...rows.map((r) => csvLine(r, ','))].join('\n'))),
  fc.array(fc.array(fc.string({ maxLength: 6 }), { minLength: 2, maxLength: 2 }), { minLength: 1, maxLength: 4 }).map((rows) => writeParquet(['instruction', 'response'], rows) as Uint8Array),
);

fuzz('damaged files of every format, under any name', fc.tuple(mutatedBytes(validFile), fc.constantFrom(...NAMES), limits), async ([bytes, name, lim]) => {
  await readAll(name, bytes, lim);
});

/** Random bytes with a head that steers format detection: BOMs, PAR1, '[', '{', archive magics. */
const heads = fc.constantFrom(
  new Uint8Array(0), enc.encode('PAR1'), enc.encode('['), enc.encode('{"a":'), enc.encode('a,b\n'), enc.encode('a\tb\n'),
  Uint8Array.of(0xef, 0xbb, 0xbf), Uint8Array.of(0xff, 0xfe), Uint8Array.of(0xfe, 0xff), Uint8Array.of(0x1f, 0x8b), Uint8Array.of(0x50, 0x4b, 0x03, 0x04),
);

fuzz('random bytes behind format-steering heads', fc.tuple(heads, fc.uint8Array({ maxLength: 300 }), fc.boolean(), fc.constantFrom(...NAMES), limits), async ([head, body, tail, name, lim]) => {
  await readAll(name, concat(head, body, tail ? enc.encode('PAR1') : new Uint8Array(0)), lim);
});

fuzz('random text in the characters that structure each format', fc.tuple(
  fc.string({ unit: fc.constantFrom('a', 'b', ' ', ',', '\t', '"', '\n', '\r', '{', '}', '[', ']', ':', '\\', 'ü', '\u2028', '\ufeff'), maxLength: 120 }),
  fc.constantFrom(...NAMES.filter((n) => !n.endsWith('.parquet'))),
  limits,
), async ([text, name, lim]) => {
  await readAll(name, enc.encode(text), lim);
  await readAll(name, text, lim);
});

// Failures the fuzzer found, kept as named cases (seed and path from the run that found them).
describe('dataset reader fuzz regressions', () => {
  test('a CSV row holding only "" is a row with one empty field, not a blank line (seed 548147466, path 3:38:1:0)', async () => {
    const got = await readAll('one.tsv', enc.encode('"q"\n""\n"x"\n'));
    expect(got?.map((r) => r.value)).toEqual([{ q: '' }, { q: 'x' }]);
  });

  test('a Parquet footer naming a column the schema lacks is one DatasetError, no unhandled rejection (seed 294089872, path 443)', async () => {
    // The fuzzer renamed the schema's "response" to "sesponse", leaving the column chunk's path at
    // "response": hyparquet then never awaited that chunk, and its failure escaped every await.
    const bytes = writeParquet(['instruction', 'response'], [['a', 'b']]);
    const at = Buffer.from(bytes).indexOf('response');
    bytes[at] = 's'.charCodeAt(0);
    const e = await openDataset({ name: 'renamed.parquet', data: bytes }).then(async (o) => {
      for await (const r of o.records) void r;
    }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(DatasetError);
    expect((e as DatasetError).message).toMatch(/^renamed\.parquet is not a Parquet file we can read: .*"response", which the schema does not have/);
  });
});
