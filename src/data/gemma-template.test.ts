// Gemma's chat template with assistant-only loss. No Gemma tokenizer ships in the fixture packages
// (its tokenizer.json is 33 MB), so a byte-level BPE (the Qwen3 fixture's) gets Gemma's special
// tokens and Gemma 3's chat template (google/gemma-3-1b-it tokenizer_config.json, verbatim): what is
// checked is the template's rendering and which tokens train, not Gemma's token ids.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fixtureDir } from '../testing/fixture-tokenizers.ts';
import { loadTokenizer } from './tokenizer.ts';
import { prepareDataset } from './pipeline.ts';
import { IGNORE_INDEX } from './types.ts';

const GEMMA3_CHAT_TEMPLATE = "{{ bos_token }}\n{%- if messages[0]['role'] == 'system' -%}\n    {%- if messages[0]['content'] is string -%}\n        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}\n    {%- else -%}\n        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}\n    {%- endif -%}\n    {%- set loop_messages = messages[1:] -%}\n{%- else -%}\n    {%- set first_user_prefix = \"\" -%}\n    {%- set loop_messages = messages -%}\n{%- endif -%}\n{%- for message in loop_messages -%}\n    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}\n    {%- endif -%}\n    {%- if (message['role'] == 'assistant') -%}\n        {%- set role = \"model\" -%}\n    {%- else -%}\n        {%- set role = message['role'] -%}\n    {%- endif -%}\n    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else \"\") }}\n    {%- if message['content'] is string -%}\n        {{ message['content'] | trim }}\n    {%- elif message['content'] is iterable -%}\n        {%- for item in message['content'] -%}\n            {%- if item['type'] == 'image' -%}\n                {{ '<start_of_image>' }}\n            {%- elif item['type'] == 'text' -%}\n                {{ item['text'] | trim }}\n            {%- endif -%}\n        {%- endfor -%}\n    {%- else -%}\n        {{ raise_exception(\"Invalid content type\") }}\n    {%- endif -%}\n    {{ '<end_of_turn>\\n' }}\n{%- endfor -%}\n{%- if add_generation_prompt -%}\n    {{'<start_of_turn>model\\n'}}\n{%- endif -%}\n";

// Gemma's ids for these tokens (pad 0, eos 1, bos 2, start_of_turn 105, end_of_turn 106) are taken
// by BPE merges here; they get ids past the Qwen3 vocabulary instead.
const SPECIAL = ['<pad>', '<eos>', '<bos>', '<start_of_turn>', '<end_of_turn>'];
const ID = Object.fromEntries(SPECIAL.map((s, i) => [s, 151_700 + i]));

function gemmaTokenizer() {
  const json = JSON.parse(readFileSync(join(fixtureDir('qwen3'), 'tokenizer.json'), 'utf8'));
  json.added_tokens = [...json.added_tokens, ...SPECIAL.map((content) => ({ id: ID[content], content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }))];
  return loadTokenizer(json, {
    tokenizer_class: 'GemmaTokenizer', bos_token: '<bos>', eos_token: '<eos>', pad_token: '<pad>', add_bos_token: true, chat_template: GEMMA3_CHAT_TEMPLATE,
  });
}

describe('Gemma chat template', () => {
  const tok = gemmaTokenizer();
  const conv = [
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: 'Hi there' },
    { role: 'assistant', content: 'Hello!' },
    { role: 'user', content: 'Bye' },
    { role: 'assistant', content: 'Goodbye.' },
  ];

  it('<end_of_turn> closes a turn', () => {
    expect(tok.endOfTurnTokens).toContain('<end_of_turn>');
  });

  it('renders user/model turns, the system prompt folded into the first user turn', () => {
    expect(tok.renderChat(conv, false)).toBe(
      '<bos><start_of_turn>user\nBe brief.\n\nHi there<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n'
      + '<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\nGoodbye.<end_of_turn>\n',
    );
  });

  it('assistant-only loss: each reply and its <end_of_turn> train; the prompt, "<start_of_turn>model\\n" and the newline after a turn do not', async () => {
    const r = await prepareDataset({ name: 'chat.jsonl', data: JSON.stringify({ messages: conv }) }, tok, { shuffle: false });
    const s = r.train[0];
    const ids = Array.from(s.input_ids);
    expect(ids[0]).toBe(ID['<bos>']);
    // The trained runs, decoded.
    const runs: string[] = [];
    let cur: number[] = [];
    for (let i = 0; i < ids.length; i++) {
      const trained = s.labels[i] !== IGNORE_INDEX;
      if (trained) expect(s.labels[i]).toBe(ids[i]);
      if (trained) cur.push(ids[i]);
      else if (cur.length) {
        runs.push(tok.decode(cur));
        cur = [];
      }
    }
    if (cur.length) runs.push(tok.decode(cur));
    expect(runs).toEqual(['Hello!<end_of_turn>', 'Goodbye.<end_of_turn>']);
    expect(ids.filter((x) => x === ID['<end_of_turn>'])).toHaveLength(4);
    expect(s.labels.at(-1)).toBe(IGNORE_INDEX); // the final "\n"
  });

  it('the generation prompt ends with "<start_of_turn>model\\n"', () => {
    expect(tok.renderChat(conv.slice(0, 2), true).endsWith('<start_of_turn>model\n')).toBe(true);
  });
});
