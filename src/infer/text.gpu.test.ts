// Text generation end to end on the shipped demo model (public/models/demo: random BF16 weights, the
// genuine Llama 2 tokenizer): prompt encoding, KV-cache generation, streamed decoding.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { LlamaTokenizer } from '@huggingface/transformers';
import { Gpu } from '../gpu/runtime.ts';
import { openModelFolder } from '../io/model-folder.ts';
import { directorySources } from '../node/fs-source.ts';
import { openModel, type OpenedModel } from '../model/open.ts';
import { generationModel } from './kv-open.ts';
import { encodePrompt, generateText } from './text.ts';

const dir = fileURLToPath(new URL('../../public/models/demo', import.meta.url));
const read = (f: string) => JSON.parse(readFileSync(`${dir}/${f}`, 'utf8'));
const tok = new LlamaTokenizer(read('tokenizer.json'), read('tokenizer_config.json'));

let gpu: Gpu;
let m: OpenedModel;
beforeAll(async () => {
  gpu = await Gpu.create();
  const folder = await openModelFolder(await directorySources(dir));
  const opened = await openModel(gpu, folder, { quant: 'none', batch: 1, seqLen: 40, training: false });
  m = { ...opened, model: generationModel(gpu, opened).model };
});
afterAll(() => gpu?.destroy());

describe('demo model: text generation', () => {
  test('a sampled completion streams as pieces that add up to the decode of its ids', async () => {
    const pieces: string[] = [], ids: number[] = [];
    const prompt = 'Once upon a time, in a café';
    const r = await generateText(m.model, tok, prompt, {
      maxNewTokens: 6, temperature: 1, seed: 5, eosIds: m.config.eosTokenIds,
      onText: (p) => pieces.push(p), onToken: (id) => ids.push(id),
    });
    expect(r.promptIds).toEqual(tok.encode(prompt));
    expect(r.ids).toEqual(ids);
    expect(r.ids.length).toBe(r.stop === 'eos' ? r.ids.length : 6);
    expect(new Set(r.ids).size).toBeGreaterThan(1);
    expect(pieces.join('')).toBe(r.text);
    expect(r.text).toBe(tok.decode(r.ids, { skip_special_tokens: true }));
    expect(r.text.length).toBeGreaterThan(0);
  });

  test('chat: the template is applied to the prompt', async () => {
    const r = await generateText(m.model, tok, 'Tell me a story.', { maxNewTokens: 2, chat: true });
    expect(r.promptIds).toEqual(encodePrompt(tok, [{ role: 'user', content: 'Tell me a story.' }]));
    expect(tok.decode(r.promptIds)).toBe('<s> [INST] Tell me a story. [/INST]');
    expect(r.ids).toHaveLength(2);
    expect(r.stop).toBe('length');
  });
});
