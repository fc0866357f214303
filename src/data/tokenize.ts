// Rendered examples to token ids and labels, by TRL SFTTrainer's rules (trl/trainer/sft_trainer.py;
// docs/formats.md#training-data-conventions):
//  - special tokens as the tokenizer adds them (tokenizer(text), add_special_tokens true) for text and
//    prompt/completion; none added for chat, whose template writes its own (apply_chat_template
//    tokenizes with add_special_tokens false);
//  - EOS appended to text and completions unless already there; not to chat (the template ends turns);
//  - completion-only loss: the first len(tokenizer(prompt)) positions get -100;
//  - assistant-only loss for chat: only the assistant replies (and their end-of-turn token) train;
//  - truncation keeps the start.
import type { Rendered } from './templates.ts';
import { withEos } from './templates.ts';
import type { TextTokenizer } from './tokenizer.ts';
import { IGNORE_INDEX, type TokenizedExample } from './types.ts';

export interface TokenizeOptions {
  /** Longest sequence; longer examples keep their first maxLength tokens. TRL's default is 1024. */
  maxLength: number;
  /** Loss only on the completion for prompt/completion and instruction data (TRL: on for these). */
  completionOnlyLoss: boolean;
  /** Loss only on assistant replies for chat data. */
  assistantOnlyLoss: boolean;
}

export const DEFAULT_TOKENIZE: TokenizeOptions = { maxLength: 1024, completionOnlyLoss: true, assistantOnlyLoss: true };

export function tokenizeRendered(r: Rendered, tok: TextTokenizer, opts: TokenizeOptions, row: number, line?: number): TokenizedExample {
  let ids: number[];
  let mask: (i: number) => boolean; // true where the loss trains
  if (r.kind === 'completion') {
    const completion = withEos(r.completion, tok);
    ids = tok.encode(r.prompt + completion, true);
    // TRL: completion_mask = [0]*len(prompt_ids) + [1]*(len(ids) - len(prompt_ids)). An empty prompt
    // is plain text: every token trains.
    const boundary = r.prompt.length > 0 && opts.completionOnlyLoss ? tok.encode(r.prompt, true).length : 0;
    mask = (i) => i >= boundary;
  } else {
    ids = [];
    const trained: boolean[] = [];
    for (const s of r.segments) {
      const part = tok.encode(s.text, false);
      for (const id of part) {
        ids.push(id);
        trained.push(s.trained || !opts.assistantOnlyLoss);
      }
    }
    mask = (i) => trained[i];
  }
  // Position 0 is never a target (the model shifts labels by one), as in trainedTokens().
  let firstTarget = -1;
  for (let i = 1; i < ids.length && firstTarget < 0; i++) if (mask(i)) firstTarget = i;
  const truncated = ids.length > opts.maxLength;
  const n = Math.min(ids.length, opts.maxLength);
  const input_ids = new Int32Array(n);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    input_ids[i] = ids[i];
    labels[i] = mask(i) ? ids[i] : IGNORE_INDEX;
  }
  return { input_ids, labels, row, line, truncated, fullLength: ids.length, firstTarget };
}

/** Tokens that contribute to the loss. Labels are shifted inside the model, so position 0 never is a
 *  target whatever its label says; it is not counted. */
export function trainedTokens(labels: Int32Array): number {
  let k = 0;
  for (let i = 1; i < labels.length; i++) if (labels[i] !== IGNORE_INDEX) k++;
  return k;
}
