import { describe, expect, it } from 'vitest';
import { DatasetError, ModelFileError, reviveError } from '../errors.ts';
import { readable } from './readable.ts';

describe('readable errors', () => {
  it('keeps a typed error message and hint and names the place', () => {
    const e = new DatasetError('bad.jsonl: 1 row cannot be used:\n  line 3: not JSON', 'Fix or skip.', {
      file: 'bad.jsonl', line: 3, problems: [{ kind: 'json-syntax', file: 'bad.jsonl', line: 3, row: 3, message: 'line 3: not JSON' }],
    });
    const r = readable(e);
    expect(r).toMatchObject({ code: 'dataset', hint: 'Fix or skip.', where: 'bad.jsonl, line 3' });
    expect(r.problems?.[0].line).toBe(3);
  });
  it('works on an error rebuilt from the worker wire format', () => {
    const wire = new ModelFileError('pytorch_model.bin is a Python pickle', 'Use safetensors.', { file: 'pytorch_model.bin', reason: 'pickle' }).toJSON();
    const r = readable(reviveError(wire));
    expect(r.code).toBe('model-file');
    expect(r.where).toBe('pytorch_model.bin');
  });
  it('never shows stack lines', () => {
    const r = readable(new Error('boom\n    at f (x.ts:1:2)\n    at g (y.ts:3:4)'));
    expect(r.message).toBe('boom');
    expect(r.hint).not.toBe('');
  });
  it('translates quota and network failures from the browser', () => {
    expect(readable(new DOMException('x', 'QuotaExceededError')).code).toBe('quota');
    expect(readable(new TypeError('Failed to fetch')).code).toBe('network');
    expect(readable('a string').message).toBe('Something went wrong.');
  });
});
