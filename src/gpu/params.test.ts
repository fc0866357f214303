import { describe, expect, test } from 'vitest';
import { grid, params } from './runtime.ts';

describe('params', () => {
  test('packs u32 fields then f32 fields, padded to 16 bytes', () => {
    const b = params([3, 7], [0.5]);
    expect(b.byteLength).toBe(16);
    expect([...new Uint32Array(b, 0, 2)]).toEqual([3, 7]);
    expect(new Float32Array(b)[2]).toBe(0.5);
    expect(params([1, 2, 3, 4], [1]).byteLength).toBe(32);
  });
  test('rejects values a u32 cannot hold', () => {
    expect(() => params([-1])).toThrow(RangeError);
    expect(() => params([1.5])).toThrow(RangeError);
    expect(() => params([2 ** 32])).toThrow(RangeError);
  });
});

describe('grid', () => {
  test('fits any count into x*y with x, y <= 65535 and covers it', () => {
    for (const n of [1, 65535, 65536, 1_000_000, 65535 * 65535]) {
      const [x, y] = grid(n);
      expect(x).toBeLessThanOrEqual(65535);
      expect(y).toBeLessThanOrEqual(65535);
      expect(x * y).toBeGreaterThanOrEqual(n);
      expect(x * (y - 1)).toBeLessThan(n); // no whole empty row of workgroups
    }
    expect(grid(0)).toEqual([1, 1]);
  });
});
