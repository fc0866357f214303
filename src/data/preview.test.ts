// The preview shows exactly what the model sees: token pieces read in context join to the tokenizer's
// decode of the whole sequence, with the genuine Llama 2 (SentencePiece with byte fallback) and
// Llama 3 (byte-level BPE) tokenizers. Decoding tokens one at a time, as the site once did, drops
// every SentencePiece space ("ThủđôcủaViệtNamlàgì?") and splits byte-fallback characters.
import fc from 'fast-check';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { dataCommand } from '../node/data-command.ts';
import { fixtureDir, fixtureTokenizer, type FixtureName } from '../testing/fixture-tokenizers.ts';
import { prepareDataset } from './pipeline.ts';
import { tokenPieces } from './stats.ts';

const MULTILINGUAL = fileURLToPath(new URL('../../fixtures/data/multilingual.jsonl', import.meta.url));
const TOKENIZERS: FixtureName[] = ['llama2', 'llama3'];

const TEXTS = [
  'Thủ đô của Việt Nam là gì?',
  'Tiếng Việt có dấu: ắ ằ ẳ ẵ ặ ề ở ữ ỹ đ Đ',
  '日本の首都はどこですか？東京です。',
  '中文，标点。한국어',
  'emoji 😀👍🏽 👨‍👩‍👧 🇻🇳 🗼',
  ' leading space',
  'trailing space ',
  'multiple   spaces    here',
  '   ',
  'line one\nline two\n\n\nafter blank lines\n',
  '\ttab\tseparated\t',
  'punctuation , spaced . out ! do n\'t',
  '',
];

describe.each(TOKENIZERS)('token pieces with the %s tokenizer', (name) => {
  const tok = fixtureTokenizer(name);
  const pieces = (ids: number[]) => tokenPieces(ids, (w) => tok.decode(w));

  it.each(TEXTS)('join to the decode of the whole sequence: %j', (text) => {
    const ids = tok.encode(text, true);
    const decoded = tok.decode(ids);
    expect(pieces(ids).join('')).toBe(decoded);
    // Decoding keeps the text itself (Llama 2 writes "<s>" and its prefix space first).
    expect(decoded.endsWith(text)).toBe(true);
  });

  it('a word keeps its leading space in its own piece, and a split character is not torn', () => {
    const ids = tok.encode('của Việt Nam 😀', false);
    const p = pieces(ids);
    expect(p).toContain(' Nam');
    expect(p.some((s) => s.includes('😀'))).toBe(true);
    expect(p.join('')).not.toContain('\uFFFD');
  });

  it('join to the decode for any mix of scripts, spaces and newlines (property)', () => {
    const unit = fc.constantFrom(' ', '  ', '\n', '\t', 'a', 'ab', 'Thủ', 'đô', 'ệ', '日本', '語', '😀', '👍🏽', '🇻🇳', ',', '.', "'", '<', '0x', '▁', '�');
    fc.assert(
      fc.property(fc.array(unit, { maxLength: 24 }).map((u) => u.join('')), fc.boolean(), (text, special) => {
        const ids = tok.encode(text, special);
        expect(pieces(ids).join('')).toBe(tok.decode(ids));
      }),
      { numRuns: 300, seed: 12 },
    );
  });
});

describe('the preview of a seed-format dataset', () => {
  let out = '';
  afterEach(() => vi.restoreAllMocks());

  it.each(TOKENIZERS)('%s: the runs are the decoded sequence, and `webtune data` prints the same', async (name) => {
    const tok = fixtureTokenizer(name);
    const { readFile } = await import('node:fs/promises');
    const r = await prepareDataset({ name: 'multilingual.jsonl', data: await readFile(MULTILINGUAL) }, tok, { shuffle: false });
    expect(r.preview).toHaveLength(3);
    for (const p of r.preview) {
      expect(p.runs.map((x) => x.text).join('')).toBe(tok.decode(p.tokens.map((t) => t.id)));
      expect(p.runs.some((x) => x.trained)).toBe(true);
    }
    const [vi0, ja, spaces] = r.preview;
    expect(vi0.marked).toContain('### Instruction:\nThủ đô của Việt Nam là gì?\n### Response:\n⟦');
    expect(vi0.marked).toContain('Thủ đô của Việt Nam là Hà Nội.');
    expect(ja.marked).toContain('日本の首都はどこですか？');
    expect(ja.marked).toContain('東京です。🗼');
    expect(spaces.marked).toContain('  Two  spaces,  then a tab\tand\nnew lines  \n### Response:\n');
    expect(spaces.marked).toContain(' Ça va? 😀👍🏽 ok , fine . ');

    out = '';
    vi.spyOn(process.stdout, 'write').mockImplementation((s) => ((out += String(s)), true));
    expect(await dataCommand(['--data', MULTILINGUAL, '--model', fixtureDir(name)])).toBe(0);
    for (const p of r.preview) expect(out).toContain(`trained ones in ⟦ ⟧ ---\n${p.marked}\n--- ids`);
  });
});
