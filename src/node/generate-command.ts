// `webtune generate`: complete a prompt, streaming the text to stdout as it comes.
import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import { UsageError } from '../errors.ts';
import { checkGenerateOptions } from '../infer/generate.ts';
import { encodePrompt } from '../infer/text.ts';
import { ModelStore } from '../app/model-store.ts';
import { storageFromFlag } from '../app/options.ts';
import { Chat } from '../app/chat.ts';
import { adapterFromDir, folderSource } from './fs-source.ts';

const USAGE = `usage: webtune generate --model DIR [--adapter DIR] [--quant nf4|none] [--storage f16|f32] --prompt TEXT [--chat]
  [--max-new-tokens 64] [--temperature 0] [--top-k K] [--top-p P] [--seed S]`;

export async function generateCommand(argv: string[]): Promise<number> {
  let v: Record<string, string | boolean | undefined>;
  try {
    v = parseArgs({
      args: argv, strict: true, allowPositionals: false,
      options: {
        model: { type: 'string' }, adapter: { type: 'string' }, quant: { type: 'string' }, storage: { type: 'string' }, prompt: { type: 'string' },
        chat: { type: 'boolean' }, 'max-new-tokens': { type: 'string' }, temperature: { type: 'string' },
        'top-k': { type: 'string' }, 'top-p': { type: 'string' }, seed: { type: 'string' }, help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (e) {
    throw new UsageError((e as Error).message.split('\n')[0], USAGE);
  }
  if (v.help) {
    console.log(USAGE);
    return 0;
  }
  if (typeof v.model !== 'string' || typeof v.prompt !== 'string') throw new UsageError('--model and --prompt are required.', USAGE, { field: v.model ? 'prompt' : 'model' });
  const quant = (v.quant as string | undefined) ?? 'nf4';
  if (quant !== 'nf4' && quant !== 'none') throw new UsageError(`--quant must be nf4 or none, got "${quant}".`, USAGE, { field: 'quant' });
  const numOpt = (k: string, d: number) => {
    if (v[k] === undefined) return d;
    const n = Number(v[k]);
    if (!Number.isFinite(n)) throw new UsageError(`--${k} must be a number, got "${v[k]}".`, USAGE, { field: k });
    return n;
  };
  const opts = {
    maxNewTokens: numOpt('max-new-tokens', 64), temperature: numOpt('temperature', 0), topK: numOpt('top-k', 0),
    topP: numOpt('top-p', 1), seed: numOpt('seed', 0),
  };
  checkGenerateOptions(opts);
  const storage = storageFromFlag(v.storage);
  const store = new ModelStore();
  const files = await store.read(await folderSource(resolve(v.model)), quant);
  const chat = Boolean(v.chat);
  const promptIds = encodePrompt(files.tokenizer.hf, v.prompt, chat);
  const adapter = v.adapter ? await adapterFromDir(files.config, resolve(v.adapter as string)) : undefined;
  try {
    // RoPE rows for exactly the prompt and the new tokens.
    await store.load(files, quant, undefined, { maxPositions: promptIds.length + opts.maxNewTokens, storage });
    const generation = new Chat(store);
    if (adapter) generation.adapter = await store.openAdapter(adapter);
    const r = await generation.generate(v.prompt, { ...opts, adapter: !!adapter, chat }, (piece) => process.stdout.write(piece));
    process.stdout.write('\n');
    process.stderr.write(`(${r.ids.length} tokens, stopped at ${r.stop === 'eos' ? 'end of sequence' : 'the token limit'})\n`);
    return 0;
  } finally {
    store.gpu?.destroy();
  }
}
