import { describe, expect, test } from 'vitest';
import { transferHandlers } from 'comlink';
import { installErrorTransfer } from './errors-transfer.ts';
import { GpuOutOfMemoryError } from '../errors.ts';

describe('typed errors across comlink', () => {
  test('a WebtuneError thrown in the worker is rebuilt with its class on the page side', () => {
    installErrorTransfer();
    const h = transferHandlers.get('throw')!;
    const err = new GpuOutOfMemoryError('layers.3.mlp', 1 << 28, { weights: 1 << 29 });
    const [wire] = h.serialize({ value: err });
    const arrived = structuredClone(wire); // what postMessage does
    let caught: unknown;
    try {
      h.deserialize(arrived);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(GpuOutOfMemoryError);
    expect((caught as GpuOutOfMemoryError).hint).toBe(err.hint);
    expect((caught as GpuOutOfMemoryError).details).toEqual(err.details);
  });

  test('other errors still cross as comlink sends them', () => {
    installErrorTransfer();
    const h = transferHandlers.get('throw')!;
    const [wire] = h.serialize({ value: new TypeError('plain') });
    expect(() => h.deserialize(structuredClone(wire))).toThrow('plain');
  });
});
