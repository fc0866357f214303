import { describe, expect, test } from 'vitest';
import {
  DeviceLostError, FileSystemError, GpuOutOfMemoryError, ShaderCompileError, TrainingDivergedError, WebtuneError, formatBytes, reviveError,
} from './errors.ts';

describe('typed errors', () => {
  test('survive a structured-clone round trip with their class, code, hint and details', () => {
    const cases: WebtuneError[] = [
      new ShaderCompileError('matmul_nf4', ['matmul_nf4.wgsl:3:1: bad']),
      new GpuOutOfMemoryError('layer.0.q', 1 << 30, { weights: 5 << 20, lora: 0 }),
      new DeviceLostError('unknown', 'GPU hung'),
      new TrainingDivergedError(12, NaN, Infinity),
      new FileSystemError('--out /x: permission denied (EACCES).', 'h', { path: '/x', errno: 'EACCES' }),
    ];
    for (const e of cases) {
      const wire = structuredClone(e.toJSON());
      const back = reviveError(wire);
      expect(back).toBeInstanceOf(e.constructor);
      expect(back).toBeInstanceOf(WebtuneError);
      expect(back.message).toBe(e.message);
      expect(back.code).toBe(e.code);
      expect(back.hint).toBe(e.hint);
      expect(back.details).toEqual(e.details);
    }
  });

  test('an unknown name comes back as a WebtuneError, not a crash', () => {
    const e = reviveError({ name: 'FutureError', code: 'x', message: 'm', hint: 'h' });
    expect(e).toBeInstanceOf(WebtuneError);
    expect(e.message).toBe('m');
  });

  test('out-of-memory names what was asked and what is held', () => {
    const e = new GpuOutOfMemoryError('embed', 3 * 1024 ** 3, { weights: 512 * 1024 ** 2, optimizer: 0 });
    expect(e.message).toBe('Could not allocate 3.00 GiB for "embed"; already allocated: weights 512.0 MiB.');
  });

  test('formatBytes', () => {
    expect(formatBytes(10)).toBe('10 B');
    expect(formatBytes(1536)).toBe('1.50 KiB');
    expect(formatBytes(200 * 1024 ** 2)).toBe('200.0 MiB');
  });
});
