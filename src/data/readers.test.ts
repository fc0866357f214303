// Every bad input the issue lists, each asserting that the message names the line or row.
import { describe, expect, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { DatasetError, UsageError } from '../errors.ts';
import { csvRecords } from './csv.ts';
import { firstInvalidUtf8, lines, sniffEncoding } from './decode.ts';
import { findJsonFault } from './json-locate.ts';
import { writeParquet } from '../testing/parquet-fixture.ts';
import { openDataset } from './readers.ts';
import type { DataInput, Problem, SourceRecord } from './types.ts';

async function readAll(name: string, data: DataInput, limits?: { maxLineChars?: number }) {
  const o = await openDataset({ name, data }, { limits });
  const rows: SourceRecord[] = [];
  for await (const r of o.records) rows.push(r);
  return { ...o, rows, problems: o.problems as Problem[] };
}

async function fails(p: Promise<unknown>): Promise<DatasetError> {
  const e = await p.then(
    () => null,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(DatasetError);
  return e as DatasetError;
}

const enc = (s: string) => new TextEncoder().encode(s);
function utf16(s: string, le: boolean, bom: boolean): Uint8Array {
  const out = new Uint8Array(s.length * 2 + (bom ? 2 : 0));
  let o = 0;
  if (bom) {
    out.set(le ? [0xff, 0xfe] : [0xfe, 0xff]);
    o = 2;
  }
  for (let i = 0; i < s.length; i++, o += 2) {
    const c = s.charCodeAt(i);
    out[o + (le ? 0 : 1)] = c & 0xff;
    out[o + (le ? 1 : 0)] = c >> 8;
  }
  return out;
}
/** A stream that hands out the bytes in small pieces, to cross every chunk boundary. */
function trickle(b: Uint8Array, size = 7): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream({
    pull(c) {
      if (i >= b.length) c.close();
      else {
        c.enqueue(b.slice(i, i + size));
        i += size;
      }
    },
  });
}

const JSONL = '{"instruction":"a","response":"b"}\n{"instruction":"c","response":"d"}\n';

describe('encodings', () => {
  it('a UTF-8 BOM is stripped: the first key compares equal (PapaParse #1142)', async () => {
    for (const data of [enc('\ufeff' + JSONL), '\ufeff' + JSONL, new Blob([enc('\ufeff' + JSONL)]), trickle(enc('\ufeff' + JSONL))]) {
      const { rows } = await readAll('x.jsonl', data);
      expect(Object.keys(rows[0].value as object)[0]).toBe('instruction');
    }
    const csv = await readAll('x.csv', enc('\ufeffinstruction,response\na,b\n'));
    expect(csv.columns).toEqual(['instruction', 'response']);
  });
  it('UTF-16 LE and BE, with and without BOM, decode to the same rows', async () => {
    const want = (await readAll('x.jsonl', JSONL)).rows.map((r) => r.value);
    for (const [le, bom] of [
      [true, true],
      [false, true],
      [true, false],
      [false, false],
    ]) {
      const r = await readAll('x.jsonl', trickle(utf16(JSONL + '{"instruction":"é✓","response":"ü"}\n', le, bom)));
      expect(r.rows.slice(0, 2).map((x) => x.value)).toEqual(want);
      expect(r.rows[2].value).toEqual({ instruction: 'é✓', response: 'ü' });
      expect(r.encoding).toBe(le ? 'utf-16le' : 'utf-16be');
    }
  });
  it('binary data is refused with the offset of the zero byte', async () => {
    const e = await fails(readAll('x.jsonl', new Uint8Array([0x7b, 0x22, 0x61, 0x00, 0x01, 0x02, 0x03, 0xff, 0x10])));
    expect(e.message).toMatch(/x\.jsonl contains binary data \(a zero byte at offset 3\)/);
  });
  it('archives and UTF-32 are named, not misread', () => {
    expect(() => sniffEncoding(new Uint8Array([0x50, 0x4b, 3, 4, 0, 0]), 'd.json')).toThrow(/d\.json is a zip file/);
    expect(() => sniffEncoding(new Uint8Array([0x1f, 0x8b, 8, 0]), 'd.jsonl')).toThrow(/gzip/);
    expect(() => sniffEncoding(new Uint8Array([0xff, 0xfe, 0, 0, 0x7b, 0, 0, 0]), 'd.jsonl')).toThrow(/UTF-32/);
  });
});

describe('empty files', () => {
  for (const [name, data] of [
    ['e.jsonl', new Uint8Array(0)],
    ['e.csv', ''],
    ['e.json', new Blob([])],
    ['e.txt', enc('\ufeff')],
  ] as const) {
    it(`${name} (${data.constructor.name})`, async () => {
      const e = await fails(readAll(name, data));
      expect(e.message).toBe(`${name} is empty.`);
      expect(e.details).toMatchObject({ file: name, line: 1 });
    });
  }
  it('whitespace only', async () => {
    expect((await fails(readAll('w.jsonl', '\n  \n\n'))).message).toMatch(/w\.jsonl is empty/);
  });
  it('a CSV with a header and no rows', async () => {
    expect((await fails(readAll('h.csv', 'instruction,response\n'))).message).toMatch(/h\.csv has a header row but no data rows/);
  });
  it('an empty JSON array', async () => {
    expect((await fails(readAll('a.json', '[ ]'))).message).toMatch(/a\.json holds an empty JSON array/);
  });
});

describe('JSON and JSONL syntax errors name line, column and show a snippet', () => {
  it('JSON array: a missing comma on line 3', async () => {
    const text = '[\n  {"instruction": "a", "response": "b"},\n  {"instruction": "c" "response": "d"}\n]';
    const e = await fails(readAll('bad.json', text));
    expect(e.message).toMatch(/^bad\.json line 3, column 23: expected "," or "}", found "\\""/);
    expect(e.message).toContain('{"instruction": "c" "response": "d"}\n                      ^');
    expect(e.details).toMatchObject({ file: 'bad.json', line: 3, column: 23 });
  });
  it('JSON array: a trailing comma', async () => {
    const e = await fails(readAll('t.json', '[{"text": "a"},\n]'));
    expect(e.message).toMatch(/t\.json line 2, column 1: trailing comma/);
  });
  it('JSONL: the bad line is a problem with its line and column, the good lines still come through', async () => {
    const r = await readAll('x.jsonl', '{"text":"a"}\n\n{"text": "b",}\n{"text":"c"}\n{"text":"unclosed}\n');
    expect(r.rows.map((x) => (x.value as { text: string }).text)).toEqual(['a', 'c']);
    expect(r.rows.map((x) => x.line)).toEqual([1, 4]);
    expect(r.problems.map((p) => [p.kind, p.line, p.column])).toEqual([
      ['json-syntax', 3, 14],
      ['json-syntax', 5, 19],
    ]);
    expect(r.problems[0].message).toBe('x.jsonl line 3, column 14: trailing comma before the closing bracket.');
    expect(r.problems[0].snippet).toBe('{"text": "b",}\n             ^');
  });
  it('array elements carry their line numbers', async () => {
    const r = await readAll('l.json', '[\n{"text":"a"},\n\n{"text":"b"}\n]');
    expect(r.rows.map((x) => x.line)).toEqual([2, 4]);
  });
  it('the fault finder agrees with JSON.parse on mutated documents and never overflows the stack', () => {
    const base = '{"a": [1, 2.5e3, -0.1, "x\\u00e9\\n", true, null], "b": {"c": [], "d": {}}}';
    let seed = 7;
    const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    const alphabet = '{}[],:"\\ 0-e.tnx';
    for (let k = 0; k < 3000; k++) {
      const chars = base.split('');
      const pos = Math.floor(rand() * chars.length);
      const op = rand();
      if (op < 0.33) chars.splice(pos, 1);
      else if (op < 0.66) chars.splice(pos, 0, alphabet[Math.floor(rand() * alphabet.length)]);
      else chars[pos] = alphabet[Math.floor(rand() * alphabet.length)];
      const s = chars.join('');
      let ok = true;
      try {
        JSON.parse(s);
      } catch {
        ok = false;
      }
      expect(findJsonFault(s) === null, s).toBe(ok);
    }
    expect(findJsonFault('['.repeat(200000))).not.toBeNull();
  });
});

describe('CSV and TSV', () => {
  it('RFC 4180 quoting: delimiters, doubled quotes, CRLF and line breaks inside quotes', async () => {
    const text = 'instruction,response\r\n"Say ""hi"", please","Hi,\r\nthere"\r\nplain,"x"\r\n';
    const r = await readAll('q.csv', trickle(enc(text), 3));
    expect(r.rows.map((x) => x.value)).toEqual([
      { instruction: 'Say "hi", please', response: 'Hi,\r\nthere' },
      { instruction: 'plain', response: 'x' },
    ]);
    expect(r.rows.map((x) => [x.row, x.line])).toEqual([
      [1, 2],
      [2, 4],
    ]);
  });
  it('TSV by extension, and a tab-delimited .csv by sniffing', async () => {
    for (const name of ['t.tsv', 't.csv']) {
      const r = await readAll(name, 'instruction\tresponse\na, b\tc\n');
      expect(r.rows[0].value).toEqual({ instruction: 'a, b', response: 'c' });
    }
  });
  it('ragged rows are reported with line, row and the header, and skipped', async () => {
    const r = await readAll('r.csv', 'instruction,response\na,b\nc\nd,e,f\ng,h\n');
    expect(r.rows.map((x) => x.row)).toEqual([1, 4]);
    expect(r.problems.map((p) => p.message)).toEqual([
      'r.csv line 3 (row 2): 1 field where the header has 2 (instruction, response).',
      'r.csv line 4 (row 3): 3 fields where the header has 2 (instruction, response).',
    ]);
  });
  it('an unclosed quote names the line where it opened', async () => {
    const r = await readAll('u.csv', 'instruction,response\na,b\nc,"oops\nd,e\n');
    expect(r.problems[0]).toMatchObject({ kind: 'unterminated-quote', line: 3, row: 2 });
    expect(r.problems[0].message).toMatch(/^u\.csv line 3 \(row 2\): a quoted field opened here is never closed/);
  });
  it('random records round-trip through CSV exactly', async () => {
    let seed = 3;
    const rand = () => ((seed = (seed * 1664525 + 1013904223) >>> 0) / 2 ** 32);
    const pieces = ['a', ' ', ',', '"', '\n', '\r\n', 'é', '✓', 'x y', ''];
    const field = () => Array.from({ length: Math.floor(rand() * 5) }, () => pieces[Math.floor(rand() * pieces.length)]).join('');
    const rows = Array.from({ length: 200 }, () => [field() || 'q', field()]);
    const quote = (s: string) => `"${s.replace(/"/g, '""')}"`;
    const text = 'instruction,response\n' + rows.map((r) => r.map(quote).join(',')).join('\r\n');
    const got: string[][] = [];
    for await (const r of csvRecords((async function* () {
      for (let i = 0; i < text.length; i += 11) yield text.slice(i, i + 11);
    })(), ',', 1e6)) got.push(r.fields);
    expect(got.slice(1)).toEqual(rows);
  });
});

describe('a single enormous row', () => {
  it('JSONL: skipped with its line number, and the rows after it still read', async () => {
    const big = `{"text":"${'x'.repeat(5000)}"}`;
    const r = await readAll('big.jsonl', trickle(enc(`{"text":"a"}\n${big}\n{"text":"b"}\n`), 100), { maxLineChars: 1000 });
    expect(r.rows.map((x) => x.line)).toEqual([1, 3]);
    expect(r.problems[0]).toMatchObject({ kind: 'row-too-long', line: 2, row: 2 });
    expect(r.problems[0].message).toMatch(/^big\.jsonl line 2: the row is 5,011 characters long, over the 1,000-character limit; skipped\.$/);
  });
  it('a file that is one endless line without a line break ends with a problem, not a hang', async () => {
    const r = await readAll('one.jsonl', trickle(enc('{"text":"' + 'y'.repeat(20000)), 512), { maxLineChars: 1000 });
    expect(r.rows).toEqual([]);
    expect(r.problems[0]).toMatchObject({ kind: 'row-too-long', line: 1 });
  });
  it('CSV: an enormous quoted field is reported at its line', async () => {
    const r = await readAll('big.csv', `instruction,response\na,b\nc,"${'z\n'.repeat(800)}"\nd,e\n`, { maxLineChars: 1000 });
    expect(r.rows.map((x) => x.value)).toEqual([{ instruction: 'a', response: 'b' }, { instruction: 'd', response: 'e' }]);
    expect(r.problems[0]).toMatchObject({ kind: 'row-too-long', line: 3, row: 2 });
  });
  it('the line splitter reports the length of what it dropped', async () => {
    const out = [];
    for await (const l of lines((async function* () {
      yield 'ab\ncdefgh';
      yield 'ij\r\nk';
    })(), 5)) out.push(l);
    expect(out).toEqual([{ text: 'ab', line: 1 }, { text: '', line: 2, tooLong: 9 }, { text: 'k', line: 3 }]);
  });
});

describe('plain text and Parquet', () => {
  it('text: one example per paragraph, with its starting line', async () => {
    const r = await readAll('t.txt', 'First para\nstill first.\n\n\nSecond.\n');
    expect(r.rows).toEqual([
      { value: { text: 'First para\nstill first.' }, row: 1, line: 1 },
      { value: { text: 'Second.' }, row: 2, line: 5 },
    ]);
  });
  it('parquet: rows and columns from a Blob and from a stream', async () => {
    const bytes = writeParquet(['instruction', 'response'], [['a', 'b'], ['cé', 'd']]);
    for (const data of [new Blob([bytes]), trickle(bytes, 50)]) {
      const r = await readAll('p.parquet', data);
      expect(r.format).toBe('parquet');
      expect(r.columns).toEqual(['instruction', 'response']);
      expect(r.rows).toEqual([
        { value: { instruction: 'a', response: 'b' }, row: 1 },
        { value: { instruction: 'cé', response: 'd' }, row: 2 },
      ]);
    }
  });
  it('parquet: detected by its magic bytes whatever the name', async () => {
    const r = await readAll('data.bin', writeParquet(['text'], [['hello']]));
    expect(r.rows[0].value).toEqual({ text: 'hello' });
  });
  it('a truncated or corrupt parquet file is a DatasetError naming the file', async () => {
    const bytes = writeParquet(['text'], [['hello']]);
    for (const bad of [bytes.slice(0, 10), (() => {
      const b = bytes.slice();
      b[b.length - 8] = 0xff; // footer length points before the start
      b[b.length - 7] = 0xff;
      return b;
    })()]) {
      const e = await fails(readAll('c.parquet', bad));
      expect(e.message).toMatch(/^c\.parquet is not a Parquet file we can read/);
    }
  });
});

describe('text that is not UTF-8', () => {
  const fixture = (name: string) => readFile(fileURLToPath(new URL(`../../fixtures/data/${name}`, import.meta.url)));

  it('an invalid UTF-8 byte is refused with its line and byte, in any chunking', async () => {
    const bytes = await fixture('invalid-utf8.jsonl');
    for (const size of [1, 3, 7, 1 << 20]) {
      const e = await fails(readAll('invalid-utf8.jsonl', trickle(bytes, size)));
      expect(e.message, `chunks of ${size}`).toBe('invalid-utf8.jsonl line 3: bytes that are not valid UTF-8 (0xE9 0x20 0x69 0x73 at byte 54).');
      expect(e.details).toMatchObject({ line: 3, offset: 54 });
      expect(e.hint).toMatch(/--encoding latin1/);
    }
  });

  it('a file ending inside a character, and a Latin-1 CSV, are refused too', async () => {
    const cut = enc('{"text": "a"}\n{"text": "é"}').slice(0, -3); // ends after the first byte of é
    expect((await fails(readAll('cut.jsonl', cut))).message).toMatch(/^cut\.jsonl line 2: bytes that are not valid UTF-8 \(0xC3 at byte 24\)\.$/);
    expect((await fails(readAll('latin1.csv', await fixture('latin1.csv')))).message).toMatch(/^latin1\.csv line 2: /);
  });

  it('an explicit encoding decodes Latin-1 (windows-1252) and UTF-16 exactly', async () => {
    const o = await openDataset({ name: 'latin1.csv', data: await fixture('latin1.csv') }, { encoding: 'latin1' });
    const rows = [];
    for await (const r of o.records) rows.push(r.value);
    expect(o.encoding).toBe('windows-1252');
    expect(rows).toEqual([{ instruction: 'How do you say coffee in French?', response: 'café' }, { instruction: 'And cream?', response: 'crème fraîche – 20 €' }]);
    const u = await openDataset({ name: 'u.jsonl', data: utf16('{"text":"Thủ đô"}\n', true, false) }, { encoding: 'utf-16le' });
    for await (const r of u.records) expect(r.value).toEqual({ text: 'Thủ đô' });
  });

  it('an unknown encoding name is a usage error', async () => {
    const e = await openDataset({ name: 'x.csv', data: enc('a,b\n') }, { encoding: 'klingon' }).then(() => null, (x: unknown) => x);
    expect(e).toBeInstanceOf(UsageError);
    expect((e as UsageError).message).toBe('Unknown text encoding "klingon".');
  });

  it('firstInvalidUtf8 follows the WHATWG decoder on every 1- to 3-byte sequence', () => {
    const fatal = new TextDecoder('utf-8', { fatal: true });
    const valid = (b: Uint8Array) => {
      try {
        fatal.decode(b);
        return true;
      } catch {
        return false;
      }
    };
    for (let x = 0x80; x < 0x100; x++) {
      for (const y of [0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xff]) {
        for (const z of [0x41, 0x80, 0xbf, 0xc0]) {
          const b = Uint8Array.of(x, y, z, 0x80, 0x80);
          for (const len of [2, 3, 4]) {
            const s = b.subarray(0, len);
            expect(firstInvalidUtf8(s) === s.length, `${[...s].map((v) => v.toString(16))}`).toBe(valid(s));
          }
        }
      }
    }
  });
});

describe('CSV quoting errors', () => {
  it('a stray quote in an unquoted field, or text after a closing quote, is reported by line and the row skipped', async () => {
    const bytes = await readFile(fileURLToPath(new URL('../../fixtures/data/unbalanced-quote.csv', import.meta.url)));
    const r = await readAll('unbalanced-quote.csv', bytes);
    expect(r.rows.map((x) => x.value)).toEqual([{ instruction: 'plain', response: 'row' }]);
    expect(r.problems.map((p) => [p.kind, p.line, p.row])).toEqual([['bad-quote', 2, 1], ['bad-quote', 3, 2]]);
    expect(r.problems[0].message).toMatch(/^unbalanced-quote\.csv line 2 \(row 1\): a quote where CSV does not allow one/);
  });

  it('a quote that opens a field and never closes is still the unterminated-quote problem, at its line', async () => {
    const r = await readAll('u.csv', 'instruction,response\na,b\n"c,d\ne,f\n');
    expect(r.problems.map((p) => [p.kind, p.line])).toEqual([['unterminated-quote', 3]]);
  });

  it('a bad quote in a multi-line record is reported at the line where it is', async () => {
    const r = await readAll('m.csv', 'instruction,response\n"two\nlines"x,y\nok,fine\n');
    expect(r.problems.map((p) => [p.kind, p.line, p.row])).toEqual([['bad-quote', 3, 1]]);
    expect(r.rows.map((x) => x.value)).toEqual([{ instruction: 'ok', response: 'fine' }]);
  });
});
