// The fit search on real shapes (configs only, no GPU): budgets are taken from the plan itself, so
// each expectation says which change the search must pick, not a number copied from a run.
import { describe, expect, test } from 'vitest';
import { ModelTooLargeError } from '../errors.ts';
import { parseModelConfig } from '../model/config.ts';
import { SHAPES } from '../model/shapes.ts';
import { DEFAULT_OPTIONS } from './options.ts';
import { candidates, checkFit, fitPlan, fitSettings, nearestFit, requireFit, shapeFits, suggestionFlags, type FitContext, type FitSettings } from './fit.ts';

const LIMITS = { maxBufferSize: 2 ** 31, maxStorageBufferBindingSize: 2 ** 31 };
const ctx = (shape: string, extra: Partial<FitContext> = {}): FitContext => ({ dims: parseModelConfig(SHAPES[shape]), quant: 'nf4', doubleQuantKnob: true, ...extra });
const user = (o: Partial<FitSettings> = {}): FitSettings => ({ ...fitSettings({ ...DEFAULT_OPTIONS, seqLen: 512, batch: 1 }), ...o });
const peak = (c: FitContext, s: FitSettings) => checkFit(c, s, { budget: Infinity, limits: LIMITS }).peakBytes;
const dev = (budget: number) => ({ budget, limits: LIMITS });

describe('checkFit', () => {
  test('fits exactly at its own peak and not a byte under', () => {
    const c = ctx('llama-3.2-1b'), s = user();
    const p = peak(c, s);
    expect(checkFit(c, s, dev(p))).toMatchObject({ fits: true, peakBytes: p });
    expect(checkFit(c, s, dev(p - 1))).toMatchObject({ fits: false, over: 'budget' });
  });

  test('a buffer over the per-buffer limit does not fit whatever the budget', () => {
    const c = ctx('llama-3-8b'), s = user({ storage: 'f32' });
    const r = checkFit(c, s, { budget: Infinity, limits: { maxBufferSize: 2 ** 30, maxStorageBufferBindingSize: 2 ** 27 } });
    expect(r).toMatchObject({ fits: false, over: 'buffer' });
    expect(r.largest.bytes).toBeGreaterThan(2 ** 30);
    expect(['embed', 'head']).toContain(r.largest.name);
  });
});

describe('nearestFit', () => {
  test('settings that fit need no change', () => {
    const c = ctx('llama-3.2-1b'), s = user();
    expect(nearestFit(c, s, dev(peak(c, s)))).toMatchObject({ settings: s, changes: [], cost: 0 });
  });

  test('8B from f32 storage: f16 storage alone when the budget is its peak', () => {
    const c = ctx('llama-3-8b'), s = user({ storage: 'f32' });
    const budget = peak(c, { ...s, storage: 'f16' });
    const n = nearestFit(c, s, dev(budget))!;
    expect(n.changes).toEqual(['storage f16']);
    expect(n.settings).toEqual({ ...s, storage: 'f16' });
    expect(n.report.peakBytes).toBe(budget);
  });

  test('1B in f16 at batch 1: checkpointing when the budget is its peak (double quantization saves too little)', () => {
    const c = ctx('llama-3.2-1b'), s = user();
    const budget = peak(c, { ...s, checkpointing: true });
    expect(peak(c, { ...s, doubleQuant: true })).toBeGreaterThan(budget);
    const n = nearestFit(c, s, dev(budget))!;
    expect(n.settings.checkpointing).toBe(true);
    expect(n.report.fits).toBe(true);
    expect(n.cost).toBe(2);
  });

  test('3B at batch 4: the batch is halved with accumulation doubled before the rank or the sequence change', () => {
    const c = ctx('llama-3.2-3b'), s = user({ batch: 4, gradAccum: 2, checkpointing: true });
    const budget = peak(c, { ...s, batch: 2, gradAccum: 4, doubleQuant: true });
    const n = nearestFit(c, s, dev(budget))!;
    expect(n.report.fits).toBe(true);
    expect(n.settings.batch * n.settings.gradAccum).toBe(8); // the effective batch is kept
    expect(n.settings.rank).toBe(s.rank);
    expect(n.settings.seqLen).toBe(s.seqLen);
    expect(n.settings.batch).toBeLessThan(4);
  });

  test('the answer is the cheapest that fits: every cheaper combination is over the budget', () => {
    for (const [shape, o] of [['llama-3.2-1b', { targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj'], batch: 2 }], ['llama-3-8b', { storage: 'f32' }]] as const) {
      const c = ctx(shape), s = user(o as Partial<FitSettings>);
      const weights = checkFit(c, s, dev(Infinity)).byCategory.weights;
      const budget = weights + (peak(c, s) - weights) / 5;
      const n = nearestFit(c, s, dev(budget))!;
      expect(n.report.fits).toBe(true);
      for (const k of candidates(c, s)) if (k.cost < n.cost) expect(checkFit(c, k.settings, dev(budget)).fits).toBe(false);
      expect(nearestFit(c, s, dev(budget))).toEqual(n); // deterministic
      // A larger budget never asks for more change.
      expect(nearestFit(c, s, dev(budget * 1.2))!.cost).toBeLessThanOrEqual(n.cost);
    }
  });

  test('a loaded base fixes double quantization and the tables: suggestions leave them alone', () => {
    const c = ctx('llama-3-8b', { doubleQuantKnob: false, tableStorage: 'f32', maxPositions: 4096 }), s = user({ storage: 'f32' });
    for (const k of candidates(c, s)) expect(k.settings.doubleQuant).toBe(false);
    const weights = checkFit(c, s, dev(Infinity)).byCategory.weights;
    expect(weights).toBe(checkFit(c, { ...s, storage: 'f16' }, dev(Infinity)).byCategory.weights);
  });

  test('below the weights nothing fits: the error says so, with the plan by category', () => {
    const c = ctx('llama-3-8b'), s = user({ storage: 'f32' });
    const weights = checkFit(c, { ...s, storage: 'f16', doubleQuant: true }, dev(Infinity)).byCategory.weights;
    expect(nearestFit(c, s, dev(weights - 1))).toBeUndefined();
    const e = (() => {
      try {
        requireFit('llama-3-8b', c, s, dev(weights - 1));
      } catch (x) {
        return x as ModelTooLargeError;
      }
    })()!;
    expect(e).toBeInstanceOf(ModelTooLargeError);
    expect(e.message).toMatch(/^llama-3-8b does not fit: it plans \S+ GiB of GPU memory at peak and the budget is \S+ GiB\. Plan by category: weights /);
    for (const k of ['weights', 'activations', 'optimizer', 'scratch', 'lora']) expect(e.message).toMatch(new RegExp(`[:,] ${k} \\d`));
    expect(e.details.byCategory).toEqual(checkFit(c, s, dev(Infinity)).byCategory);
    expect(e.details.suggestion).toBeUndefined();
    expect(e.hint).toMatch(/smaller model/);
  });

  test('the error names the nearest settings, as CLI flags where the host gives them', () => {
    const c = ctx('llama-3-8b'), s = user({ storage: 'f32' });
    const budget = peak(c, { ...s, storage: 'f16', checkpointing: true });
    const n = nearestFit(c, s, dev(budget))!;
    let e: ModelTooLargeError | undefined;
    try {
      requireFit('llama-3-8b', c, s, dev(budget), suggestionFlags);
    } catch (x) {
      e = x as ModelTooLargeError;
    }
    expect(e!.details.suggestion).toEqual({ settings: n.settings, changes: n.changes, peakBytes: n.report.peakBytes, byCategory: n.report.byCategory });
    expect(e!.hint).toContain(n.changes.join(', '));
    expect(e!.hint).toContain(suggestionFlags(n.settings, s));
    expect(suggestionFlags(n.settings, s)).toMatch(/--storage f16/);
  });
});

describe('shapeFits (the site\'s fit meter)', () => {
  const GiB = 1024 ** 3;
  test('plans each shape in the form the site loads it: the run\'s storage for the tables, its double quantization', () => {
    const s = user({ storage: 'f16', doubleQuant: true, checkpointing: true, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] });
    const row = shapeFits(s, dev(6.5 * GiB)).find((r) => r.shape === 'llama-3-8b')!;
    // The CLI's plan of the same run (`bench --plan-only --storage f16 --double-quant --checkpointing`),
    // with the site's 4096 RoPE rows instead of the run's 512.
    const cli = fitPlan(ctx('llama-3-8b', { maxPositions: 4096 }), s, LIMITS);
    expect(row.peakBytes).toBe(cli.peakBytes());
    expect(row.byCategory).toEqual(cli.byCategory());
    expect(row.fits).toBe(true);
    expect(row.peakBytes).toBeLessThan(6.5 * GiB);
    // f16 tables and 8-bit absmax codes are in its weights: the f32 form's weights are larger.
    const f32 = fitPlan(ctx('llama-3-8b', { maxPositions: 4096, tableStorage: 'f32' }), { ...s, doubleQuant: false }, LIMITS);
    expect(f32.byCategory().weights).toBeGreaterThan(row.byCategory.weights + 2 * GiB);
  });

  test('suggestions may switch the loaded form: double quantization and f16 storage are among them', () => {
    const s = user({ storage: 'f32' });
    const c = ctx('llama-3-8b', { maxPositions: 4096 });
    const budget = peak(c, { ...s, storage: 'f16', doubleQuant: true });
    const row = shapeFits(s, dev(budget)).find((r) => r.shape === 'llama-3-8b')!;
    expect(row.fits).toBe(false);
    expect(row.suggestion?.changes).toEqual(['storage f16', 'double quantization on']);
  });
});
