// The stored ZIP writer, read back by Python's zipfile (an independent reader that checks every
// CRC with testzip), and CRC-32 against the standard check value.
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { crc32, zipStore } from './zip.ts';

test('CRC-32 of "123456789" is the catalogue check value cbf43926', () => {
  expect(crc32(new TextEncoder().encode('123456789')).toString(16)).toBe('cbf43926');
  expect(crc32(new Uint8Array())).toBe(0);
});

test('Python zipfile reads every file back, CRCs and UTF-8 names included', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'webtune-zip-'));
  try {
    const bin = Uint8Array.from({ length: 70_000 }, (_, i) => (i * 31) & 0xff);
    const zip = zipStore({ 'train.py': 'print("hi")\n', 'data/train.jsonl': '{"a": "ä €"}\n', 'bin/x.bin': bin, 'empty.txt': '' }, new Date(2026, 0, 2, 3, 4, 6));
    const path = join(dir, 'p.zip');
    await writeFile(path, zip);
    const py = `import zipfile, json, sys
z = zipfile.ZipFile(sys.argv[1])
assert z.testzip() is None
print(json.dumps({i.filename: [i.file_size, i.compress_type, list(i.date_time), z.read(i.filename).hex() if i.file_size < 100 else len(z.read(i.filename))] for i in z.infolist()}))`;
    const got = JSON.parse(execFileSync('python3', ['-c', py, path], { encoding: 'utf8' }));
    const hex = (s: string) => Buffer.from(s).toString('hex');
    expect(got).toEqual({
      'train.py': [12, 0, [2026, 1, 2, 3, 4, 6], hex('print("hi")\n')],
      'data/train.jsonl': [Buffer.byteLength('{"a": "ä €"}\n'), 0, [2026, 1, 2, 3, 4, 6], hex('{"a": "ä €"}\n')],
      'bin/x.bin': [70_000, 0, [2026, 1, 2, 3, 4, 6], 70_000],
      'empty.txt': [0, 0, [2026, 1, 2, 3, 4, 6], ''],
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
