import { describe, expect, test } from 'vitest';
import { transferHandlers } from 'comlink';
import { installErrorTransfer } from './errors-transfer.ts';
import * as errors from '../errors.ts';
import {
  AdapterFileError, DatasetError, DeviceLostError, ERROR_CLASSES, GpuFeatureMissingError, GpuOutOfMemoryError, GpuUnavailableError, ModelTooLargeError,
  GpuValidationError, ModelFileError, ShaderCompileError, StorageQuotaError, UsageError, WebtuneError, type ErrorName,
  FileSystemError, TrainingDivergedError, HubUploadError,
} from '../errors.ts';

/** One real instance of each class, as the code that raises it builds it. Keyed by the registry's
 *  names, so a class missing here fails the coverage test below. */
const SAMPLES: Record<ErrorName, () => WebtuneError> = {
  GpuUnavailableError: () => new GpuUnavailableError('No WebGPU adapter.', 'Use Chrome 113 or later.'),
  ShaderCompileError: () => new ShaderCompileError('matmul_nf4', ['matmul_nf4.wgsl:3:1: bad']),
  GpuOutOfMemoryError: () => new GpuOutOfMemoryError('layers.3.mlp', 1 << 28, { weights: 1 << 29 }, 1 << 30),
  DeviceLostError: () => new DeviceLostError('destroyed', 'Device was destroyed.'),
  GpuValidationError: () => new GpuValidationError('matmul.dispatch', 'binding too small'),
  GpuFeatureMissingError: () => new GpuFeatureMissingError('matmul_f16', 'shader-f16'),
  ModelFileError: () => new ModelFileError('model.safetensors is truncated.', 'Download it again.', { file: 'model.safetensors', tensor: 'lm_head.weight' }),
  AdapterFileError: () => new AdapterFileError('lora_A has the wrong shape.', 'Use an adapter made for this model.', { tensor: 'lora_A', shape: [2, 128] }),
  DatasetError: () => new DatasetError('Line 3 is not JSON.', 'Fix the line.', { file: 'd.jsonl', line: 3 }),
  UsageError: () => new UsageError('Invalid training option alpha: 0.', 'alpha must be above 0.', { field: 'alpha', value: 0 }),
  StorageQuotaError: () => new StorageQuotaError('the quantized model', { bytes: 5 << 20 }),
  FileSystemError: () => new FileSystemError('/out/adapter: permission denied (EACCES).', 'Choose a folder you can write to.', { path: '/out/adapter', errno: 'EACCES' }),
  TrainingDivergedError: () => new TrainingDivergedError(7, NaN, Infinity),
  HubUploadError: () => new HubUploadError('The Hub refused the commit (HTTP 500).', 'Try again later.', { repo: 'me/adapter', status: 500 }),
  ModelTooLargeError: () => new ModelTooLargeError('llama-3-8b', { peakBytes: 9 << 30, byCategory: { weights: 5 << 30, activations: 4 << 30 }, over: 'budget', largest: { name: 'embed', bytes: 1 << 30 } },
    { budget: 8 << 30, limits: { maxBufferSize: 2 << 30 } }, { settings: { checkpointing: true }, changes: ['checkpointing on'], report: { peakBytes: 6 << 30, byCategory: { weights: 5 << 30, activations: 1 << 30 } } }, { checkpointing: false }),
};

/** Across comlink as the worker sends it: serialize, structured clone (postMessage), deserialize. */
function across(value: unknown): unknown {
  installErrorTransfer();
  const h = transferHandlers.get('throw')!;
  const [wire] = h.serialize({ value });
  try {
    h.deserialize(structuredClone(wire));
  } catch (e) {
    return e;
  }
  throw new Error('deserialize did not throw');
}

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

  test('the registry lists every error class the module exports', () => {
    const exported = Object.entries(errors).filter(([, v]) => typeof v === 'function' && v.prototype instanceof WebtuneError).map(([k]) => k);
    expect(Object.keys(ERROR_CLASSES).sort()).toEqual(exported.sort());
    expect(Object.keys(SAMPLES).sort()).toEqual(Object.keys(ERROR_CLASSES).sort());
  });

  // One case per class of the registry: a class added to errors.ts is tested without a new line here
  // beyond its sample.
  test.each(Object.entries(ERROR_CLASSES))('%s crosses with its class, name, code, message, hint and details', (name, cls) => {
    const err = SAMPLES[name as ErrorName]();
    expect(err).toBeInstanceOf(cls);
    const back = across(err) as WebtuneError;
    expect(back).toBeInstanceOf(cls);
    expect(back).toBeInstanceOf(WebtuneError);
    expect(back.name).toBe(name);
    expect(back.code).toBe(err.code);
    expect(back.message).toBe(err.message);
    expect(back.hint).toBe(err.hint);
    expect(back.details).toEqual(err.details);
  });
});
