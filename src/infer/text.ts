// Text in, text out: a prompt (plain, or chat messages through the tokenizer's chat template) is
// encoded with the model's own tokenizer (@huggingface/transformers, built from in-memory files, no
// network), generated over the KV cache, and decoded as it streams. Streaming decodes the whole
// generated suffix each step and emits only what is new, holding back a trailing U+FFFD: a character
// spread over several byte-fallback tokens (emoji, CJK in Llama 2's vocabulary) is emitted once it is
// complete, and merges that change spacing are seen in context (HF TextStreamer does the same; the
// cost is one decode of the suffix per token, fine at chat lengths).
import type { PreTrainedTokenizer } from '@huggingface/transformers';
import { UsageError } from '../errors.ts';
import type { LlamaModel } from '../model/llama.ts';
import { generate, type GenerateOptions } from './generate.ts';

/** What generation needs from a tokenizer; PreTrainedTokenizer (and AutoTokenizer's result) has it. */
export type GenerationTokenizer = Pick<PreTrainedTokenizer, 'encode' | 'decode' | 'apply_chat_template' | 'eos_token_id'>;

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** A plain prompt, or a conversation to render with the chat template. */
export type Prompt = string | ChatMessage[];

/**
 * Prompt token ids. Chat: the template rendered with add_generation_prompt, then encoded without
 * adding special tokens (templates write BOS themselves; transformers' apply_chat_template(tokenize)
 * does the same). Plain text: encoded with the tokenizer's special tokens (Llama 2 adds BOS).
 * A string with chat true is one user message.
 */
export function encodePrompt(tokenizer: GenerationTokenizer, prompt: Prompt, chat = typeof prompt !== 'string'): number[] {
  if (!chat) {
    if (typeof prompt !== 'string') throw new UsageError('Chat messages need the chat template.', 'Pass chat: true, or a plain string prompt.', { field: 'chat' });
    return tokenizer.encode(prompt, { add_special_tokens: true });
  }
  const messages = typeof prompt === 'string' ? [{ role: 'user' as const, content: prompt }] : prompt;
  let text: unknown;
  try {
    text = tokenizer.apply_chat_template(messages, { tokenize: false, add_generation_prompt: true });
  } catch (e) {
    throw new UsageError(
      `The chat template could not be applied: ${e instanceof Error ? e.message : String(e)}`,
      'The tokenizer may have no chat template (tokenizer_config.json "chat_template"); generate without --chat, or use a chat model.',
      { file: 'tokenizer_config.json', field: 'chat_template' },
    );
  }
  if (typeof text !== 'string') throw new Error('text: apply_chat_template with tokenize false returned no string');
  return tokenizer.encode(text, { add_special_tokens: false });
}

/** Turns a growing list of token ids into text pieces whose concatenation is the full decode. */
export class StreamDecoder {
  private ids: number[] = [];
  private emitted = '';

  constructor(private readonly tokenizer: Pick<GenerationTokenizer, 'decode'>) {}

  private decode(): string {
    return this.tokenizer.decode(this.ids, { skip_special_tokens: true });
  }

  /** Adds a token; returns the text it completes ('' while a character is still partial). */
  push(id: number): string {
    this.ids.push(id);
    const text = this.decode();
    // A trailing replacement character is an incomplete UTF-8 sequence; wait for its other bytes.
    // A decode that rewrote already emitted text cannot be taken back; wait until it agrees again.
    if (text.endsWith('\uFFFD') || !text.startsWith(this.emitted)) return '';
    const piece = text.slice(this.emitted.length);
    this.emitted = text;
    return piece;
  }

  /** The rest once generation has ended (a partial character left at the end is emitted as is). */
  flush(): string {
    const text = this.decode();
    const piece = text.startsWith(this.emitted) ? text.slice(this.emitted.length) : '';
    this.emitted += piece;
    return piece;
  }

  get text(): string {
    return this.emitted;
  }
}

export interface TextGenerateOptions extends GenerateOptions {
  /** Render the prompt with the chat template (implied when the prompt is a message list). */
  chat?: boolean;
  /** Each new piece of text, as soon as it is complete. */
  onText?: (piece: string) => void;
}

export interface TextResult {
  /** The completion's text, special tokens skipped. */
  text: string;
  promptIds: number[];
  /** New token ids, EOS included when generation stopped on it. */
  ids: number[];
  /** Why generation ended. */
  stop: 'eos' | 'length' | 'stopped';
}

/**
 * Streams the completion of a prompt: encode (chat template when asked), generate over the KV cache,
 * decode incrementally into onText. Stops at opts.eosIds or the tokenizer's EOS (pass the model
 * config's eos_token_id list as eosIds: Llama 3 ends turns with <|eot_id|>). The model must be
 * planned with kvCache, batch 1 and room for prompt + maxNewTokens positions.
 */
export async function generateText(model: LlamaModel, tokenizer: GenerationTokenizer, prompt: Prompt, opts: TextGenerateOptions): Promise<TextResult> {
  const promptIds = encodePrompt(tokenizer, prompt, opts.chat ?? typeof prompt !== 'string');
  const eos = new Set(opts.eosIds ?? []);
  if (typeof tokenizer.eos_token_id === 'number') eos.add(tokenizer.eos_token_id);
  const stream = new StreamDecoder(tokenizer);
  let stopped = false;
  const ids = await generate(model, promptIds, {
    ...opts,
    eosIds: [...eos],
    onToken: (id) => {
      opts.onToken?.(id);
      const piece = stream.push(id);
      if (piece) opts.onText?.(piece);
    },
    shouldStop: () => (stopped = opts.shouldStop?.() ?? false),
  });
  const rest = stream.flush();
  if (rest) opts.onText?.(rest);
  const last = ids[ids.length - 1];
  return { text: stream.text, promptIds, ids, stop: eos.has(last) ? 'eos' : stopped ? 'stopped' : 'length' };
}
