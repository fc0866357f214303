import { describe, expect, it } from 'vitest';
import { DEFAULT_FORM, changedFields, toTrainOptions, validateForm, workEstimate } from './train-form.ts';

describe('training form', () => {
  it('defaults are the seed recipe and valid', () => {
    expect(DEFAULT_FORM).toMatchObject({ rank: 8, alpha: 32, dropout: 0.05, targets: ['q_proj', 'v_proj'], lr: 2e-4, epochs: 3, batch: 2, gradAccum: 4 });
    expect(validateForm(DEFAULT_FORM)).toEqual({});
    expect(changedFields(DEFAULT_FORM)).toEqual([]);
  });
  it('names each bad field', () => {
    const e = validateForm({ ...DEFAULT_FORM, rank: 0, dropout: 1, targets: [], lr: 0, batch: 1.5 });
    expect(Object.keys(e).sort()).toEqual(['batch', 'dropout', 'lr', 'rank', 'targets']);
  });
  it('maps to TrainOptions, with max steps only when set', () => {
    const o = toTrainOptions(DEFAULT_FORM, 256);
    expect(o.seqLen).toBe(256);
    expect('maxSteps' in o).toBe(false);
    const p = toTrainOptions({ ...DEFAULT_FORM, maxSteps: 30, rank: 16 }, 64);
    expect(p).toMatchObject({ maxSteps: 30, rank: 16 });
    expect(changedFields({ ...DEFAULT_FORM, maxSteps: 30, rank: 16 })).toEqual(['rank', 'maxSteps']);
    // The packing checkbox reaches the worker's options, and counts as a change from the defaults.
    expect(DEFAULT_FORM.packing).toBe(false);
    expect(toTrainOptions({ ...DEFAULT_FORM, packing: true }, 64).packing).toBe(true);
    expect(changedFields({ ...DEFAULT_FORM, packing: true })).toEqual(['packing']);
  });
  it('estimates steps from epochs or max steps, and time as a range', () => {
    const w = workEstimate(1e9, 100, 80, DEFAULT_FORM);
    expect(w.steps).toBe(30); // 80 examples / (2·4) = 10 steps per epoch, 3 epochs
    expect(w.tokens).toBe(30 * 8 * 100);
    expect(w.flops).toBe(4e9 * 24_000);
    expect(w.seconds[0]).toBeLessThan(w.seconds[1]);
    expect(workEstimate(1e9, 100, 80, { ...DEFAULT_FORM, maxSteps: 5 }).steps).toBe(5);
    expect(workEstimate(1e9, 100, 80, DEFAULT_FORM, 12).steps).toBe(12);
  });
  it('with packing, steps come from the packed rows and tokens from the examples they hold', () => {
    // 80 examples of 100 tokens packed 4 to a row: 20 rows, 3 steps per epoch (20 / 8, rounded up).
    const w = workEstimate(1e9, 100, 80, { ...DEFAULT_FORM, packing: true }, undefined, 20);
    expect(w.steps).toBe(9);
    expect(w.tokens).toBe(9 * 8 * 4 * 100);
  });
});
