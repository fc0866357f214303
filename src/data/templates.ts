// Templates turn an Example into what the tokenizer sees, split into the part that is only context
// (no loss) and the part the model learns to produce. Two forms, following TRL:
//  - 'completion': a prompt string and a completion string, tokenized as TRL does prompt/completion
//    data (tokenizer(prompt + completion) with its special tokens; the loss mask starts after
//    len(tokenizer(prompt))). The seed, Alpaca and raw templates produce this form.
//  - 'segments': a rendered chat split at the assistant replies; used for the model's chat template.
import { UsageError } from '../errors.ts';
import type { Example, ShapeName } from './shape.ts';
import type { TextTokenizer } from './tokenizer.ts';
import type { ChatMessage } from './types.ts';

export type TemplateName = 'seed' | 'alpaca' | 'chat' | 'raw';
export const TEMPLATE_NAMES: TemplateName[] = ['seed', 'alpaca', 'chat', 'raw'];

export type Rendered =
  | { kind: 'completion'; prompt: string; completion: string }
  | { kind: 'segments'; segments: { text: string; trained: boolean }[] };

// The seed project's template, verbatim: the response follows "### Response:\n" directly.
export const SEED_TEMPLATE = '### Instruction:\n{instruction}\n### Response:\n{response}';

// Stanford Alpaca's PROMPT_DICT (tatsu-lab/stanford_alpaca train.py; docs/formats.md#training-data-conventions). The output is appended with no space or newline.
export const ALPACA_PROMPT_INPUT =
  'Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:';
export const ALPACA_PROMPT_NO_INPUT =
  'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:';

/** The template a shape gets unless the user picks another. */
export function defaultTemplate(shape: ShapeName): TemplateName {
  switch (shape) {
    case 'seed':
      return 'seed';
    case 'alpaca':
      return 'alpaca';
    case 'messages':
    case 'sharegpt':
      return 'chat';
    case 'prompt-completion':
      // String prompt/completion is used as is (TRL); rows holding message lists always go through
      // the chat template (render() dispatches on the row, not on this name).
      return 'raw';
    case 'text':
      return 'raw';
  }
}

/** Refuses template/shape pairs that cannot work, before any row is read. */
export function checkTemplate(shape: ShapeName, template: TemplateName, tok: TextTokenizer): void {
  const chatShape = shape === 'messages' || shape === 'sharegpt';
  if ((template === 'seed' || template === 'alpaca') && (chatShape || shape === 'text')) {
    throw new UsageError(`The ${template} template needs instruction/response rows, but this dataset is ${shape}.`, `Use --template ${chatShape ? 'chat' : 'raw'}.`, { field: 'template', template, shape });
  }
  if (template === 'raw' && chatShape) {
    throw new UsageError(`Chat data (${shape}) cannot be used as raw text.`, 'Use --template chat, which renders it with the model\'s chat template.', { field: 'template', template, shape });
  }
  if (template === 'chat' && shape === 'text') {
    throw new UsageError('Plain text has no turns to put in a chat template.', 'Use --template raw.', { field: 'template', template, shape });
  }
  if ((template === 'chat' || chatShape) && !tok.hasChatTemplate) {
    throw new UsageError(
      'This model\'s tokenizer_config.json has no chat template, so chat data cannot be rendered.',
      'Use a model with a chat template (an -Instruct model), or instruction/response data with --template seed.',
      { field: 'chat_template', file: 'tokenizer_config.json' },
    );
  }
}

function fill(template: string, vars: Record<string, string>): string {
  // One pass, so a "{response}" inside the instruction text is not substituted again.
  return template.replace(/\{(\w+)\}/g, (m, k: string) => (k in vars ? vars[k] : m));
}

/** The user's turn for instruction data: the instruction, then the input after a blank line. */
export function userTurn(instruction: string, input: string): string {
  return input.trim().length > 0 ? `${instruction}\n\n${input}` : instruction;
}

/** Renders one example. Throws only for pairs checkTemplate refuses. */
export function render(ex: Example, template: TemplateName, tok: TextTokenizer): Rendered {
  switch (ex.kind) {
    case 'text':
      return { kind: 'completion', prompt: '', completion: ex.text };
    case 'chat':
      return { kind: 'segments', segments: chatSegments(ex.messages, tok, 0) };
    case 'prompt-completion-chat':
      return { kind: 'segments', segments: promptCompletionChat(ex.prompt, ex.completion, tok) };
    case 'prompt-completion':
    case 'instruction': {
      const instruction = ex.kind === 'instruction' ? ex.instruction : ex.prompt;
      const input = ex.kind === 'instruction' ? ex.input : '';
      const response = ex.kind === 'instruction' ? ex.response : ex.completion;
      switch (template) {
        case 'seed': {
          const full = fill(SEED_TEMPLATE, { instruction: userTurn(instruction, input), response: '\u0000' });
          const cut = full.indexOf('\u0000');
          return { kind: 'completion', prompt: full.slice(0, cut), completion: response };
        }
        case 'alpaca':
          return { kind: 'completion', prompt: fill(input.trim() ? ALPACA_PROMPT_INPUT : ALPACA_PROMPT_NO_INPUT, { instruction, input }), completion: response };
        case 'chat':
          return {
            kind: 'segments',
            segments: promptCompletionChat([{ role: 'user', content: userTurn(instruction, input) }], [{ role: 'assistant', content: response }], tok),
          };
        case 'raw':
          // prompt/completion strings are concatenated as they are (TRL); instruction rows get a
          // line break between question and answer so the two do not run together.
          return ex.kind === 'prompt-completion'
            ? { kind: 'completion', prompt: ex.prompt, completion: ex.completion }
            : { kind: 'completion', prompt: `${userTurn(instruction, input)}\n`, completion: response };
      }
    }
  }
}

/** TRL's conversational prompt/completion: everything the template renders after the prompt (with
 *  its generation prompt) is trained. Falls back to the assistant replies when the template's output
 *  for the prompt is not a prefix of the whole. */
function promptCompletionChat(prompt: ChatMessage[], completion: ChatMessage[], tok: TextTokenizer): { text: string; trained: boolean }[] {
  const all = [...prompt, ...completion];
  const full = tok.renderChat(all, false);
  const head = tok.renderChat(prompt, true);
  if (full.startsWith(head)) return [{ text: head, trained: false }, { text: full.slice(head.length), trained: true }].filter((s) => s.text.length > 0);
  return chatSegments(all, tok, prompt.length);
}

/** Splits a rendered chat at the assistant replies (the content plus the token that ends the turn).
 *  Chat templates rarely carry {% generation %} markers, so a reply starts where the template's
 *  rendering of the conversation before it, with the generation prompt, ends (the same prefix
 *  property TRL relies on), or failing that where its text appears. */
export function chatSegments(messages: ChatMessage[], tok: TextTokenizer, trainFrom: number): { text: string; trained: boolean }[] {
  const full = tok.renderChat(messages, false);
  const spans: [number, number][] = [];
  let cursor = 0;
  for (let i = trainFrom; i < messages.length; i++) {
    if (messages[i].role !== 'assistant') continue;
    let start = -1;
    if (i > 0) {
      const head = tok.renderChat(messages.slice(0, i), true);
      if (full.startsWith(head) && head.length >= cursor) start = head.length;
    }
    const body = messages[i].content.trim();
    const at = full.indexOf(body, start >= 0 ? start : cursor);
    if (at < 0) throw new Error(`the chat template did not render assistant message ${i + 1}`);
    if (start < 0) start = at;
    let end = at + body.length;
    const close = tok.endOfTurnTokens.find((t) => full.startsWith(t, end));
    if (close) end += close.length;
    spans.push([start, end]);
    cursor = end;
  }
  const out: { text: string; trained: boolean }[] = [];
  let pos = 0;
  for (const [s, e] of spans) {
    if (s > pos) out.push({ text: full.slice(pos, s), trained: false });
    if (e > s) out.push({ text: full.slice(s, e), trained: true });
    pos = e;
  }
  if (pos < full.length) out.push({ text: full.slice(pos), trained: false });
  return out;
}

/** The whole string the model sees, for previews. */
export function renderedText(r: Rendered, tok: TextTokenizer): string {
  return r.kind === 'completion' ? r.prompt + withEos(r.completion, tok) : r.segments.map((s) => s.text).join('');
}

/** TRL appends EOS to text and completions unless it is already there. */
export function withEos(s: string, tok: TextTokenizer): string {
  return s.endsWith(tok.eosToken) ? s : s + tok.eosToken;
}
