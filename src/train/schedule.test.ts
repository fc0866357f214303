import { describe, expect, test } from 'vitest';
import { lrLambda, parseSchedule } from './schedule.ts';
import { UsageError } from '../errors.ts';
import { loadGolden } from '../testing/compare.ts';

describe('learning-rate schedules', () => {
  test('linear with warmup equals the schedule the PyTorch reference used (tiny_models.py)', () => {
    const g = loadGolden('model_tiny-llama') as unknown as { none: { steps: { lr: number }[] } };
    const lrs = g.none.steps.map((s) => s.lr);
    expect(lrs.map((_, k) => 1e-2 * lrLambda('linear', k, 5, 2))).toEqual(lrs.map((x) => expect.closeTo(x, 12)));
  });
  test('constant, linear and cosine at known points', () => {
    expect([0, 1, 2, 5].map((k) => lrLambda('constant', k, 10, 2))).toEqual([0, 0.5, 1, 1]);
    expect(lrLambda('linear', 0, 10, 0)).toBe(1);
    expect(lrLambda('linear', 5, 10, 0)).toBe(0.5);
    expect(lrLambda('linear', 10, 10, 0)).toBe(0);
    expect(lrLambda('cosine', 0, 10, 0)).toBe(1);
    expect(lrLambda('cosine', 5, 10, 0)).toBeCloseTo(0.5, 12);
    expect(lrLambda('cosine', 10, 10, 0)).toBeCloseTo(0, 12);
  });
  test('an unknown schedule is a UsageError listing the choices', () => {
    let err: unknown;
    try {
      parseSchedule('step');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).hint).toContain('constant, linear, cosine');
  });
});
