// The one options schema: the seed's defaults, one validator for the CLI, the worker and the form,
// strict parsing of command-line numbers, and the one step count.
import { describe, expect, test } from 'vitest';
import { UsageError } from '../errors.ts';
import { DEFAULT_LORA } from '../model/lora.ts';
import { DEFAULT_TRAIN } from '../train/config.ts';
import {
  DEFAULT_OPTIONS, OPTION_FIELDS, OPTION_KEYS, checkTrainOptions, derive, flagOf, inputAttrs, optionErrors, optionsFromFlags, storageFromFlag,
} from './options.ts';

function usage(f: () => unknown): UsageError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    return e as UsageError;
  }
  throw new Error('no error thrown');
}

describe('training options', () => {
  test('the defaults are the seed recipe, from the LoRA and trainer modules, and valid', () => {
    expect(DEFAULT_OPTIONS).toMatchObject({
      rank: 8, alpha: 32, dropout: 0.05, targets: ['q_proj', 'v_proj'], lr: 2e-4, epochs: 3, batch: 2, gradAccum: 4, seqLen: 1024,
    });
    expect(DEFAULT_OPTIONS.rank).toBe(DEFAULT_LORA.rank);
    expect(DEFAULT_OPTIONS.lr).toBe(DEFAULT_TRAIN.lr);
    expect(optionErrors(DEFAULT_OPTIONS)).toEqual({});
    expect(optionsFromFlags({})).toEqual(DEFAULT_OPTIONS);
  });

  test('every field has a label, help and a rule; flags are the kebab-case keys', () => {
    for (const k of OPTION_KEYS) {
      expect(OPTION_FIELDS[k].label.length, k).toBeGreaterThan(0);
      expect(OPTION_FIELDS[k].help.length, k).toBeGreaterThan(0);
    }
    expect(flagOf('gradAccum')).toBe('grad-accum');
    expect(flagOf('maxGradNorm')).toBe('max-grad-norm');
    expect(inputAttrs('dropout')).toEqual({ min: 0, max: 0.99, step: 0.01 });
  });

  test('--packing is a flag, off by default', () => {
    expect(DEFAULT_OPTIONS.packing).toBe(false);
    expect(optionsFromFlags({ packing: true }).packing).toBe(true);
    expect(optionsFromFlags({}).packing).toBe(false);
    expect(flagOf('packing')).toBe('packing');
  });

  test('--double-quant is a flag, off by default (as bitsandbytes); absent in older runs means off', () => {
    expect(DEFAULT_OPTIONS.doubleQuant).toBe(false);
    expect(DEFAULT_OPTIONS.storage).toBe('f16');
    expect(optionsFromFlags({ 'double-quant': true }).doubleQuant).toBe(true);
    expect(optionsFromFlags({}).doubleQuant).toBe(false);
    expect(optionErrors({ ...DEFAULT_OPTIONS, doubleQuant: undefined })).toEqual({});
    expect(optionErrors({ ...DEFAULT_OPTIONS, doubleQuant: 1 as never })).toHaveProperty('doubleQuant');
  });

  test('ranges, integers and open bounds', () => {
    const bad = optionErrors({ ...DEFAULT_OPTIONS, rank: 0, alpha: 0, dropout: 1, lr: 0, batch: 1.5, seed: 0.5, targets: [], schedule: 'step' as never, seqLen: 1 });
    expect(Object.keys(bad).sort()).toEqual(['alpha', 'batch', 'dropout', 'lr', 'rank', 'schedule', 'seed', 'seqLen', 'targets']);
    expect(bad.alpha).toBe('Alpha must be above 0 (often 2 to 4 times the rank).');
    expect(optionErrors({ ...DEFAULT_OPTIONS, maxSteps: undefined })).toEqual({});
    expect(optionErrors({ ...DEFAULT_OPTIONS, packing: undefined })).toEqual({}); // runs saved before --packing
    expect(optionErrors({ ...DEFAULT_OPTIONS, packing: 'yes' as never })).toHaveProperty('packing');
    expect(optionErrors({ ...DEFAULT_OPTIONS, maxSteps: -1 })).toHaveProperty('maxSteps');
    expect(optionErrors({ ...DEFAULT_OPTIONS, lr: NaN })).toHaveProperty('lr');
    expect(optionErrors({ ...DEFAULT_OPTIONS, targets: ['q_proj', 'x_proj' as never] })).toHaveProperty('targets');
  });

  test('the worker check throws a UsageError naming the field', () => {
    const e = usage(() => checkTrainOptions({ ...DEFAULT_OPTIONS, gradAccum: 0 }));
    expect(e.details.field).toBe('gradAccum');
    expect(e.message).toContain('gradAccum');
    expect(e.hint).toMatch(/gradAccum must be a whole number of at least 1/);
  });

  test('command-line values are parsed strictly and checked before any work', () => {
    expect(optionsFromFlags({ lr: '1e-3', 'grad-accum': '2', rslora: true, targets: 'all-linear', 'max-steps': '0' })).toMatchObject({
      lr: 1e-3, gradAccum: 2, rslora: true, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
    });
    expect('maxSteps' in optionsFromFlags({ 'max-steps': '0' })).toBe(false);
    const empty = usage(() => optionsFromFlags({ lr: '' }));
    expect(empty.message).toContain('--lr');
    expect(empty.details.field).toBe('lr');
    expect(usage(() => optionsFromFlags({ 'seq-len': ' ' })).details.field).toBe('seqLen');
    const alpha = usage(() => optionsFromFlags({ alpha: '0' }));
    expect(alpha.message).toContain('--alpha');
    expect(alpha.hint).toContain('--alpha must be above 0');
    expect(usage(() => optionsFromFlags({ rank: '2.5' })).details.field).toBe('rank');
    expect(usage(() => optionsFromFlags({ epochs: 'three' })).message).toContain('--epochs');
    expect(usage(() => optionsFromFlags({ schedule: 'step' })).details.field).toBe('schedule');
  });

  test('storage: f16 by default, f32 on request, anything else refused naming the field; absent means f32 (older runs)', () => {
    expect(DEFAULT_OPTIONS.storage).toBe('f16');
    expect(optionsFromFlags({ storage: 'f32' }).storage).toBe('f32');
    const bad = usage(() => optionsFromFlags({ storage: 'bf16' }));
    expect(bad.details.field).toBe('storage');
    expect(bad.message).toContain('--storage');
    expect(bad.hint).toBe('--storage must be one of f16, f32.');
    expect(optionErrors({ ...DEFAULT_OPTIONS, storage: 'f8' as never })).toEqual({ storage: 'Storage precision must be one of f16, f32.' });
    expect(optionErrors({ ...DEFAULT_OPTIONS, storage: undefined })).toEqual({});
    // eval and generate read the same flag through the same field.
    expect(storageFromFlag(undefined)).toBe('f16');
    expect(storageFromFlag('f32')).toBe('f32');
    const e = usage(() => storageFromFlag('half'));
    expect(e.details.field).toBe('storage');
    expect(e.hint).toBe('--storage must be one of f16, f32.');
  });

  test('one step count: micro-batches of batch, grouped by gradient accumulation', () => {
    expect(derive(DEFAULT_OPTIONS, 80)).toEqual({ effectiveBatch: 8, stepsPerEpoch: 10, totalSteps: 30 });
    // 81 examples: 41 micro-batches of 2, the last group of 4 is short but still a step.
    expect(derive(DEFAULT_OPTIONS, 81)).toMatchObject({ stepsPerEpoch: 11, totalSteps: 33 });
    expect(derive({ ...DEFAULT_OPTIONS, maxSteps: 5 }, 80).totalSteps).toBe(5);
    expect(derive(DEFAULT_OPTIONS, 0).totalSteps).toBe(0);
    expect(derive({ batch: 1, gradAccum: 1, epochs: 1, maxSteps: 4 }, 12).totalSteps).toBe(4);
  });
});
