// Test helper: a tokenizer with one token per character (code point) and EOS "#" = 1, no chat
// template. Fast and exact, for pipeline arithmetic and for runs too long for a real tokenizer.
import type { TextTokenizer } from '../data/tokenizer.ts';

export const chars: TextTokenizer = {
  encode: (t) => Array.from(t.replaceAll('#', '\u0001'), (c) => c.codePointAt(0)!),
  renderChat: () => {
    throw new Error('no template');
  },
  hasChatTemplate: false,
  eosToken: '#',
  eosId: 1,
  bosId: null,
  padId: 0,
  endOfTurnTokens: ['#'],
  decode: (ids) => String.fromCodePoint(...ids.map((i) => (i === 1 ? 35 : i))),
};
