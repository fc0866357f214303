// `webtune data` (src/node/data-command.ts) on the committed samples and bad-input fixtures.
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { dataCommand } from '../node/data-command.ts';
import { fixtureDir } from '../testing/fixture-tokenizers.ts';

const root = (p: string) => fileURLToPath(new URL(`../../${p}`, import.meta.url));
let out = '';
let err = '';
beforeEach(() => {
  out = '';
  err = '';
  vi.spyOn(process.stdout, 'write').mockImplementation((s) => ((out += String(s)), true));
  vi.spyOn(process.stderr, 'write').mockImplementation((s) => ((err += String(s)), true));
});
afterEach(() => vi.restoreAllMocks());

describe('webtune data', () => {
  it('prints format, shape, statistics and the first rendered examples of the 150-pair sample', async () => {
    const code = await dataCommand(['--data', root('public/samples/baking-cups-to-grams.jsonl'), '--model', fixtureDir('llama3'), '--seq-len', '256', '--examples', '1']);
    expect(code).toBe(0);
    expect(out).toMatch(/^baking-cups-to-grams\.jsonl: jsonl \(utf-8\), shape seed \[instruction, response\], template seed/);
    expect(out).toContain('usable examples 150, problems 0');
    expect(out).toContain('### Instruction:\nHow much does 1/4 cup of all-purpose flour weigh in grams?\n### Response:\n⟦1/4 cup');
  });
  it('--json gives a machine-readable report of the chat sample', async () => {
    const code = await dataCommand(['--data', root('public/samples/baking-chat.jsonl'), '--model', fixtureDir('qwen3'), '--json']);
    expect(code).toBe(0);
    const r = JSON.parse(out);
    expect([r.format, r.shape, r.template, r.stats.examples]).toEqual(['jsonl', 'messages', 'chat', 10]);
    expect(r.preview[0].tokens[0]).toEqual([151644, 0]);
  });
  it('bad rows: every problem printed with its line, exit code 1; 0 with --skip-bad-rows', async () => {
    const args = ['--data', root('fixtures/data/bad-rows.jsonl'), '--model', fixtureDir('llama3')];
    expect(await dataCommand(args)).toBe(1);
    expect(out).toContain('bad-rows.jsonl line 2 (row 2): missing "response"');
    expect(out).toContain('bad-rows.jsonl line 3, column 14: trailing comma');
    expect(await dataCommand([...args, '--skip-bad-rows'])).toBe(0);
  });
  it('a ragged CSV names the line', async () => {
    expect(await dataCommand(['--data', root('fixtures/data/ragged.csv'), '--model', fixtureDir('llama3')])).toBe(1);
    expect(out).toContain('ragged.csv line 4 (row 3): 1 field where the header has 2');
  });
  it('fatal errors print message and hint and return 2', async () => {
    expect(await dataCommand(['--data', root('fixtures/data/bad.json'), '--model', fixtureDir('llama3')])).toBe(2);
    expect(err).toMatch(/^error: bad\.json line 3, column 23: expected "," or "}"/);
    expect(err).toContain('hint: ');
    expect(await dataCommand(['--data', root('fixtures/data/bad.json'), '--model', '/nonexistent'])).toBe(2);
    expect(err).toContain('tokenizer.json is missing');
    expect(await dataCommand(['--data', 'x', '--model', 'y', '--template', 'nope'])).toBe(2);
    expect(err).toContain('Unknown template "nope"');
  });
  it('text that is not UTF-8 is refused by line; --encoding reads it; a CSV quoting error names its line', async () => {
    const latin1 = ['--data', root('fixtures/data/latin1.csv'), '--model', fixtureDir('llama3')];
    expect(await dataCommand(latin1)).toBe(2);
    expect(err).toMatch(/^error: latin1\.csv line 2: bytes that are not valid UTF-8 \(0xE9/);
    expect(err).toContain('--encoding latin1');
    expect(await dataCommand([...latin1, '--encoding', 'latin1', '--examples', '2'])).toBe(0);
    expect(out).toMatch(/^latin1\.csv: csv \(windows-1252\)/);
    expect(out).toContain('⟦café');
    expect(await dataCommand(['--data', root('fixtures/data/unbalanced-quote.csv'), '--model', fixtureDir('llama3')])).toBe(1);
    expect(out).toContain('unbalanced-quote.csv line 2 (row 1): a quote where CSV does not allow one');
    expect(out).toContain('unbalanced-quote.csv line 3 (row 2): a quote where CSV does not allow one');
  });
});
