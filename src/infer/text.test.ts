// Prompt encoding and streamed decoding with the demo model's genuine Llama 2 tokenizer.
import { describe, expect, test } from 'vitest';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { LlamaTokenizer } from '@huggingface/transformers';
import { UsageError } from '../errors.ts';
import { encodePrompt, StreamDecoder } from './text.ts';

const demo = (f: string) => JSON.parse(readFileSync(fileURLToPath(new URL(`../../public/models/demo/${f}`, import.meta.url)), 'utf8'));
const tokJson = demo('tokenizer.json'), tokCfg = demo('tokenizer_config.json');
const tok = new LlamaTokenizer(tokJson, tokCfg);

describe('demo tokenizer and config', () => {
  test('BOS and EOS ids of config.json are the tokenizer\'s', () => {
    const cfg = demo('config.json');
    expect(cfg.vocab_size).toBe(32000);
    expect(cfg.bos_token_id).toBe(tok.bos_token_id);
    expect(cfg.eos_token_id).toBe(tok.eos_token_id);
    expect([tok.bos_token_id, tok.eos_token_id]).toEqual([1, 2]);
  });
});

describe('encodePrompt', () => {
  test('plain text gets the tokenizer\'s BOS and decodes back', () => {
    const ids = encodePrompt(tok, 'The quick brown fox');
    expect(ids[0]).toBe(1);
    expect(tok.decode(ids, { skip_special_tokens: true })).toBe('The quick brown fox');
  });

  test('chat renders the template once, with one BOS', () => {
    const ids = encodePrompt(tok, [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi there' }]);
    expect(ids.filter((x) => x === 1)).toEqual([1]);
    expect(ids[0]).toBe(1);
    expect(tok.decode(ids, { skip_special_tokens: false })).toBe('<s> [INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi there [/INST]');
    expect(encodePrompt(tok, 'Hi there', true)).toEqual(encodePrompt(tok, [{ role: 'user', content: 'Hi there' }]));
  });

  test('chat without a chat template is a UsageError naming the field', () => {
    const bare = new LlamaTokenizer(tokJson, { ...tokCfg, chat_template: undefined });
    expect(() => encodePrompt(bare, 'Hi', true)).toThrow(UsageError);
    try {
      encodePrompt(bare, 'Hi', true);
    } catch (e) {
      expect((e as UsageError).details).toMatchObject({ field: 'chat_template' });
    }
  });
});

describe('StreamDecoder', () => {
  test('pieces streamed token by token add up to the full decode, multi-byte characters whole', () => {
    const text = 'Naïve café: 世界 🦙🦙 ok — done.';
    const ids = tok.encode(text, { add_special_tokens: false });
    // Llama 2 has no token for the llama emoji: it arrives as 4 byte-fallback tokens.
    expect(ids.length).toBeGreaterThan(text.length / 3);
    const s = new StreamDecoder(tok);
    const pieces = ids.map((id) => s.push(id));
    pieces.push(s.flush());
    for (const p of pieces) expect(p).not.toContain('\uFFFD');
    expect(pieces.filter((p) => p === '').length).toBeGreaterThanOrEqual(3 * 2); // held back inside each emoji
    expect(pieces.join('')).toBe(tok.decode(ids, { skip_special_tokens: true }));
    expect(pieces.join('')).toBe(text);
    expect(s.text).toBe(text);
  });

  test('special tokens are skipped and a partial character at the end is flushed', () => {
    // Byte-fallback tokens <0x00>..<0xFF> are ids 3..258; the first byte of the emoji alone is no character.
    const emoji = tok.encode('🦙', { add_special_tokens: false }).filter((x) => x >= 3 && x < 259);
    expect(emoji).toHaveLength(4);
    const s = new StreamDecoder(tok);
    expect(s.push(1)).toBe('');
    expect(s.push(emoji[0])).toBe('');
    expect(s.flush()).toBe('\uFFFD'.repeat(1));
  });
});
