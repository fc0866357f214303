// The tokenizer seen by the data pipeline: a narrow interface over @huggingface/transformers, built
// from the model's tokenizer.json and tokenizer_config.json held in memory (no network, no
// from_pretrained: transformers.js `new PreTrainedTokenizer(tokenizerJSON, tokenizerConfig)`). The narrow interface also lets tests of
// packing and batching run on a toy tokenizer.
import { GemmaTokenizer, LlamaTokenizer, PreTrainedTokenizer, Qwen2Tokenizer } from '@huggingface/transformers';
import { ModelFileError } from '../errors.ts';
import type { ChatMessage } from './types.ts';

export interface TextTokenizer {
  /** Token ids of `text`; special-token strings in it (e.g. "<|eot_id|>") become their ids.
   *  `addSpecialTokens` adds what the tokenizer's post-processor adds (Llama 2's BOS, for one). */
  encode(text: string, addSpecialTokens: boolean): number[];
  /** The chat template rendered to a string, or null when the tokenizer has no template. */
  renderChat(messages: ChatMessage[], addGenerationPrompt: boolean): string;
  readonly hasChatTemplate: boolean;
  readonly eosToken: string;
  readonly eosId: number;
  readonly bosId: number | null;
  /** Pad id for batching: the tokenizer's pad token, else EOS (what TRL falls back to). */
  readonly padId: number;
  /** Special tokens that close a turn (EOS, <|eot_id|>, <|im_end|>, ...): trained with the reply. */
  readonly endOfTurnTokens: string[];
  /** The text of `ids`, special tokens included, exactly as the model sees it (no clean-up). */
  decode(ids: number[]): string;
}

/** A tokenizer loaded from model files: the pipeline's narrow interface plus the transformers.js
 *  tokenizer itself, which generation (src/infer/text.ts) uses directly. */
export type LoadedTokenizer = TextTokenizer & { readonly hf: PreTrainedTokenizer };

// AutoTokenizer picks the class from tokenizer_config.tokenizer_class; these are the ones whose
// behaviour differs from the base class for the models we train (padding side, legacy spaces).
const CLASSES: Record<string, typeof PreTrainedTokenizer> = { LlamaTokenizer, CodeLlamaTokenizer: LlamaTokenizer, Qwen2Tokenizer, GemmaTokenizer };

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Builds a tokenizer from the parsed contents of tokenizer.json and tokenizer_config.json. */
export function loadTokenizer(tokenizerJson: unknown, tokenizerConfig: unknown, where = 'the model folder'): LoadedTokenizer {
  if (!isObject(tokenizerJson) || !isObject(tokenizerJson.model)) {
    throw new ModelFileError(`tokenizer.json in ${where} is not a tokenizer file (no "model" section).`, 'Use the tokenizer.json that ships with the model on the Hugging Face Hub.', { file: 'tokenizer.json', field: 'model' });
  }
  if (!isObject(tokenizerConfig)) {
    throw new ModelFileError(`tokenizer_config.json in ${where} is not a JSON object.`, 'Use the tokenizer_config.json that ships with the model.', { file: 'tokenizer_config.json' });
  }
  const cls = typeof tokenizerConfig.tokenizer_class === 'string' ? CLASSES[tokenizerConfig.tokenizer_class.replace(/Fast$/, '')] : undefined;
  let tok: PreTrainedTokenizer;
  try {
    tok = new (cls ?? PreTrainedTokenizer)(tokenizerJson, tokenizerConfig);
  } catch (e) {
    throw new ModelFileError(`The tokenizer in ${where} could not be built: ${e instanceof Error ? e.message : String(e)}`, 'The tokenizer files may be corrupt or from an unsupported tokenizer type.', { file: 'tokenizer.json' });
  }
  return wrap(tok, tokenizerJson);
}

/** Parses the two files' text (from a dropped folder, IndexedDB or the hub) and builds the tokenizer. */
export function loadTokenizerFromText(tokenizerJsonText: string, tokenizerConfigText: string, where?: string): LoadedTokenizer {
  const parse = (text: string, file: string): unknown => {
    try {
      return JSON.parse(text);
    } catch (e) {
      throw new ModelFileError(`${file} in ${where ?? 'the model folder'} is not valid JSON: ${e instanceof Error ? e.message : String(e)}`, 'Download the file again; it may be truncated.', { file });
    }
  };
  return loadTokenizer(parse(tokenizerJsonText, 'tokenizer.json'), parse(tokenizerConfigText, 'tokenizer_config.json'), where);
}

function wrap(tok: PreTrainedTokenizer, json: Record<string, unknown>): LoadedTokenizer {
  const eosToken = tok.eos_token;
  if (typeof eosToken !== 'string' || typeof tok.eos_token_id !== 'number') {
    throw new ModelFileError('The tokenizer defines no EOS token, so examples cannot be terminated.', 'Set "eos_token" in tokenizer_config.json.', { file: 'tokenizer_config.json', field: 'eos_token' });
  }
  const special: string[] = Array.isArray(json.added_tokens)
    ? (json.added_tokens as unknown[]).filter((t): t is { content: string; special: boolean } => isObject(t) && t.special === true && typeof t.content === 'string').map((t) => t.content)
    : [];
  // A turn ends with EOS or a dedicated end-of-turn token; recognise them by name, since no field of
  // the tokenizer files marks them.
  const endOfTurnTokens = [...new Set([eosToken, ...special.filter((s) => /^<\|?(eot|eot_id|im_end|end|end_of_turn|endoftext)\|?>$|^<end_of_turn>$|^<\/s>$/.test(s))])];
  const hasChatTemplate = tok.chat_template !== null && tok.chat_template !== undefined;
  return {
    encode: (text, addSpecialTokens) => tok.encode(text, { add_special_tokens: addSpecialTokens }),
    renderChat: (messages, addGenerationPrompt) =>
      tok.apply_chat_template(messages as { role: string; content: string }[], { tokenize: false, add_generation_prompt: addGenerationPrompt }) as string,
    hasChatTemplate,
    eosToken,
    eosId: tok.eos_token_id,
    bosId: typeof tok.bos_token_id === 'number' ? tok.bos_token_id : null,
    padId: typeof tok.pad_token_id === 'number' ? tok.pad_token_id : tok.eos_token_id,
    endOfTurnTokens,
    // No clean_up_tokenization_spaces: that display heuristic (on in Llama 3's tokenizer_config)
    // turns "x ." into "x." and "do n't" into "don't", which is not the text the model was given.
    // transformers.js refuses an empty list; its text is ''.
    decode: (ids) => (ids.length ? tok.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false }) : ''),
    hf: tok,
  };
}
