import { expect, test } from 'vitest';
import { fileStem } from './file-stem.ts';

test('file stems drop separators and characters file systems refuse', () => {
  expect(fileStem('cups v1')).toBe('cups-v1');
  expect(fileStem('baking-cups-to-grams · 3 steps, loss 9.876')).toBe('baking-cups-to-grams-3-steps,-loss-9.876');
  expect(fileStem('a/b\\c:d*e?"<>|')).toBe('a-b-c-d-e');
  expect(fileStem(' /// ')).toBe('adapter');
  expect(fileStem('x'.repeat(100))).toHaveLength(80);
});
