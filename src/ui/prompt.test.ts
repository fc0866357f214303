import { describe, expect, it } from 'vitest';
import { framePrompt } from './prompt.ts';

describe('framePrompt', () => {
  it('frames a question exactly as the seed template trained it', () => {
    expect(framePrompt('1 cup of flour?', 'trained', 'seed')).toEqual({ text: '### Instruction:\n1 cup of flour?\n### Response:\n', chat: false });
  });
  it('uses Alpaca framing, the chat template, or nothing', () => {
    expect(framePrompt('Q', 'trained', 'alpaca').text).toMatch(/### Instruction:\nQ\n\n### Response:$/);
    expect(framePrompt('Q', 'trained', 'chat')).toEqual({ text: 'Q', chat: true });
    expect(framePrompt('Q', 'chat', 'seed')).toEqual({ text: 'Q', chat: true });
    expect(framePrompt('Q', 'raw', 'seed')).toEqual({ text: 'Q', chat: false });
  });
});
