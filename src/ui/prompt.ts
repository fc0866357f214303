// How a chat message is framed before generation. A model fine-tuned on the seed or Alpaca template
// only shows what it learned when asked in that same frame, so the chat panel offers "as trained"
// next to the tokenizer's chat template and raw text.
import { ALPACA_PROMPT_NO_INPUT, SEED_TEMPLATE, type TemplateName } from '../data/templates.ts';

export type PromptFormat = 'trained' | 'chat' | 'raw';

export interface Framed {
  text: string;
  /** Ask the worker to apply the tokenizer's chat template. */
  chat: boolean;
}

export function framePrompt(message: string, format: PromptFormat, template: TemplateName | undefined): Framed {
  if (format === 'raw') return { text: message, chat: false };
  if (format === 'chat' || template === 'chat') return { text: message, chat: true };
  switch (template) {
    case 'seed':
      return { text: SEED_TEMPLATE.replace('{instruction}', message).replace('{response}', ''), chat: false };
    case 'alpaca':
      return { text: ALPACA_PROMPT_NO_INPUT.replace('{instruction}', message), chat: false };
    case 'raw':
      // raw instruction rows were rendered as "question\nanswer"
      return { text: `${message}\n`, chat: false };
    default:
      return { text: message, chat: false };
  }
}
