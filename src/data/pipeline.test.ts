// The pipeline end to end on a toy character tokenizer (fast, exact arithmetic) and on llama3 for
// the parts that need a real one: shape detection, column mapping, bad rows, statistics, packing.
import { describe, expect, it } from 'vitest';
import { DatasetError, UsageError } from '../errors.ts';
import { prepareDataset, reportDataset } from './pipeline.ts';
import { fixtureTokenizer } from '../testing/fixture-tokenizers.ts';
import { chars } from '../testing/char-tokenizer.ts';

const rows = (n: number) => Array.from({ length: n }, (_, i) => JSON.stringify({ instruction: `q${i}`, response: `answer ${i}` })).join('\n');

describe('shapes and mapping', () => {
  const cases: [string, string, string][] = [
    ['seed', '{"instruction":"a","response":"b"}', 'seed'],
    ['alpaca', '{"instruction":"a","input":"","output":"b"}', 'alpaca'],
    ['prompt-completion', '{"prompt":"a","completion":"b"}', 'raw'],
    ['text', '{"text":"a"}', 'raw'],
    ['messages', '{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}', 'chat'],
    ['sharegpt', '{"conversations":[{"from":"human","value":"a"},{"from":"gpt","value":"b"}]}', 'chat'],
  ];
  for (const [shape, row, template] of cases) {
    it(`${shape} is detected and gets the ${template} template`, async () => {
      const r = await prepareDataset({ name: 'd.jsonl', data: row }, fixtureTokenizer('llama3'));
      expect([r.shape, r.template]).toEqual([shape, template]);
    });
  }
  it('CSV columns are mapped: question/answer as instruction/response; header case is ignored', async () => {
    const r = await prepareDataset({ name: 'd.csv', data: 'Question,ANSWER\nWhy?,Because.\n' }, chars, { mapping: { instruction: 'question', response: 'answer' } });
    expect(r.shape).toBe('seed');
    expect(r.columns).toEqual({ instruction: 'Question', response: 'ANSWER' });
    expect(r.preview[0].text).toBe('### Instruction:\nWhy?\n### Response:\nBecause.#');
  });
  it('no shape fits: the error lists the columns found and the shapes expected', async () => {
    const e = await prepareDataset({ name: 'd.csv', data: 'question,answer\na,b\n' }, chars).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(DatasetError);
    expect((e as DatasetError).message).toMatch(/^d\.csv: no known dataset shape fits the columns found \(question, answer\)\. Expected one of: .*instruction\/response/);
  });
  it('a template that does not fit the data is a UsageError', async () => {
    await expect(prepareDataset({ name: 'd.jsonl', data: '{"text":"a"}' }, chars, { template: 'seed' })).rejects.toBeInstanceOf(UsageError);
    await expect(prepareDataset({ name: 'd.jsonl', data: '{"messages":[{"role":"assistant","content":"b"}]}' }, chars)).rejects.toThrow(/no chat template/);
  });
});

describe('bad rows', () => {
  const data = [
    '{"instruction":"a","response":"b"}',
    '{"instruction":"c"}',
    '{"instruction":"d","response":""}',
    '[1,2]',
    '{"instruction":"e","response":{"x":1}}',
    '{"instruction":"f","response":"g"}',
  ].join('\n');
  it('fail by default, listing every bad row with its line, fields found and expected', async () => {
    const e = (await prepareDataset({ name: 'b.jsonl', data }, chars).catch((x: unknown) => x)) as DatasetError;
    expect(e).toBeInstanceOf(DatasetError);
    expect(e.message).toMatch(/^b\.jsonl: 4 rows cannot be used:/);
    expect(e.message).toContain('b.jsonl line 2 (row 2): missing "response"; the row has instruction, the seed shape needs instruction, response.');
    expect(e.message).toContain('b.jsonl line 3 (row 3): "response" is empty.');
    expect(e.message).toContain('b.jsonl line 4 (row 4): expected an object with instruction, response, found arrays.');
    expect(e.message).toContain('b.jsonl line 5 (row 5): "response" should be text, found object values.');
    expect(e.details).toMatchObject({ file: 'b.jsonl', line: 2, row: 2 });
  });
  it('or are skipped: the rest trains, the problems are still reported', async () => {
    const r = await prepareDataset({ name: 'b.jsonl', data }, chars, { skipBadRows: true, shuffle: false });
    expect(r.stats.examples).toBe(2);
    expect(r.problems.map((p) => [p.kind, p.line])).toEqual([
      ['missing-fields', 2],
      ['empty-field', 3],
      ['not-an-object', 4],
      ['wrong-type', 5],
    ]);
    expect(r.problems[0]).toMatchObject({ found: ['instruction'], expected: ['instruction', 'response'] });
  });
  it('a chat the template refuses is a row problem, not a crash', async () => {
    const tok = fixtureTokenizer('qwen3');
    const r = await prepareDataset(
      { name: 'c.jsonl', data: '{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}\n{"messages":[{"role":"gpt","content":"x"}]}' },
      tok,
      { skipBadRows: true },
    );
    expect(r.stats.examples).toBe(1);
    expect(r.problems[0].message).toBe('c.jsonl line 2 (row 2): message 1 has the unknown role "gpt".');
  });
  it('the input is never modified', async () => {
    const bytes = new TextEncoder().encode(data);
    const copy = bytes.slice();
    await prepareDataset({ name: 'b.jsonl', data: bytes }, chars, { skipBadRows: true });
    expect(bytes).toEqual(copy);
  });
});

describe('statistics, split and packing', () => {
  it('counts examples, tokens, trained tokens, truncation and a histogram', async () => {
    const r = await prepareDataset({ name: 's.jsonl', data: '{"text":"abc"}\n{"text":"' + 'x'.repeat(40) + '"}' }, chars, { maxLength: 20 });
    // "abc#" = 4 tokens, 3 of them targets (position 0 never is); the long one is cut to 20.
    expect(r.stats).toMatchObject({ examples: 2, tokens: 24, trainedTokens: 3 + 19, truncatedExamples: 1, minLength: 4, maxLength: 20 });
    expect(r.stats.histogram).toEqual([
      { from: 1, to: 16, count: 1 },
      { from: 17, to: 20, count: 1 },
    ]);
  });
  it('preview marks the trained tokens', async () => {
    const r = await prepareDataset({ name: 'p.jsonl', data: '{"prompt":"ab","completion":"cd"}' }, chars);
    expect(r.preview[0].marked).toBe('ab⟦cd#⟧');
    expect(r.preview[0].tokens.map((t) => t.trained)).toEqual([false, false, true, true, true]);
  });
  it('validation split and packing use every example exactly once, same seed same result', async () => {
    const run = () => prepareDataset({ name: 'r.jsonl', data: rows(50) }, chars, { validation: 0.2, packing: true, maxLength: 128, seed: 9 });
    const a = await run();
    const b = await run();
    const count = (seqs: typeof a.train) => seqs.reduce((s, q) => s + q.seq_lengths.length, 0);
    expect([count(a.train), count(a.validation)]).toEqual([40, 10]);
    expect(a.train.every((s) => s.input_ids.length <= 128)).toBe(true);
    expect(a.train.length).toBeLessThan(40);
    expect(a.train.map((s) => Array.from(s.input_ids))).toEqual(b.train.map((s) => Array.from(s.input_ids)));
  });
});

describe('reportDataset (webtune data) counts what prepareDataset makes', () => {
  const cases = [
    {},
    { validation: 0.2 },
    { validation: 7, shuffle: false },
    { packing: true, maxLength: 40 },
    { packing: true, maxLength: 64, validation: 0.3, seed: 5 },
    { packing: true, maxLength: 32, validation: 11, shuffle: false },
  ];
  for (const opts of cases) {
    it(JSON.stringify(opts), async () => {
      // Ragged lengths, some over maxLength, so packing has real choices to make.
      const data = Array.from({ length: 60 }, (_, i) => JSON.stringify({ instruction: `q${i}`, response: 'x'.repeat(1 + ((i * 7) % 40)) })).join('\n');
      const p = await prepareDataset({ name: 'r.jsonl', data }, chars, opts);
      const r = await reportDataset({ name: 'r.jsonl', data }, chars, opts);
      expect([r.trainSequences, r.validationSequences]).toEqual([p.train.length, p.validation.length]);
      const { train, validation, ...scan } = p;
      const { trainSequences, validationSequences, ...same } = r;
      expect(same).toEqual(scan);
    });
  }
});

describe('examples that lose every trained token to truncation', () => {
  it('char tokenizer: counted with their rows and the smallest seq-len that keeps a target in each', async () => {
    // Rendered by the seed template, "### Instruction:\nq\n### Response:\n" is 34 characters before the
    // answer: a long question pushes its answer past seq-len 48.
    const data = [{ instruction: 'q', response: 'a' }, { instruction: 'x'.repeat(20), response: 'b' }].map((r) => JSON.stringify(r)).join('\n');
    const r = await prepareDataset({ name: 'two.jsonl', data }, chars, { maxLength: 48, shuffle: false });
    expect(r.stats.lostTargetExamples).toBe(1);
    expect(r.stats.lostTargetRows).toEqual([2]);
    const keep = r.stats.seqLenToKeepTargets;
    const at = await prepareDataset({ name: 'two.jsonl', data }, chars, { maxLength: keep, shuffle: false });
    const below = await prepareDataset({ name: 'two.jsonl', data }, chars, { maxLength: keep - 1, shuffle: false });
    expect([at.stats.lostTargetExamples, below.stats.lostTargetExamples]).toEqual([0, 1]);
  });

  it('the baking sample with the seed template and the demo (Llama 2) tokenizer: a warning at seq-len 32, a refusal at 20', async () => {
    const { readFile } = await import('node:fs/promises');
    const { loadTokenizerFromText } = await import('./tokenizer.ts');
    const { checkTrainedTokens } = await import('./pipeline.ts');
    const root = (p: string) => new URL(`../../${p}`, import.meta.url);
    const tok = loadTokenizerFromText(await readFile(root('public/models/demo/tokenizer.json'), 'utf8'), await readFile(root('public/models/demo/tokenizer_config.json'), 'utf8'), 'demo');
    const data = await readFile(root('public/samples/baking-cups-to-grams.jsonl'), 'utf8');
    const at = (maxLength: number) => prepareDataset({ name: 'baking-cups-to-grams.jsonl', data }, tok, { maxLength, template: 'seed', shuffle: false });

    const r32 = await at(32);
    expect(r32.stats.lostTargetExamples).toBe(9);
    expect(r32.stats.trainedTokens).toBeGreaterThan(0);
    expect(checkTrainedTokens(r32.stats, r32.file, 32)).toBe(
      'baking-cups-to-grams.jsonl: 9 of 150 examples (rows 4, 9, 22, 79, 84, 97, 134, 140, 144) lose every trained token to truncation at sequence length 32 and will train nothing; --seq-len 34 keeps at least one trained token in each.');
    // 34 is the smallest that works.
    expect((await at(34)).stats.lostTargetExamples).toBe(0);
    expect((await at(33)).stats.lostTargetExamples).toBeGreaterThan(0);

    const r20 = await at(20);
    expect(r20.stats.trainedTokens).toBe(0);
    expect(() => checkTrainedTokens(r20.stats, r20.file, 20)).toThrow(DatasetError);
    expect(() => checkTrainedTokens(r20.stats, r20.file, 20)).toThrow(/^baking-cups-to-grams\.jsonl: all 150 examples lose every trained token to truncation at sequence length 20/);
    try {
      checkTrainedTokens(r20.stats, r20.file, 20);
    } catch (e) {
      expect((e as DatasetError).hint).toContain('--seq-len 34');
      expect((e as DatasetError).details).toMatchObject({ lostTargetExamples: 150, seqLenToKeepTargets: 34 });
    }
    expect(checkTrainedTokens((await at(1024)).stats, 'x', 1024)).toBeNull();
  });
});
