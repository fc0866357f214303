// Chunked submission: the runtime submits on its own every SUBMIT_EVERY dispatches, so the GPU starts
// on the first part of a long step while the rest is recorded; each chunk is one compute pass.
import { describe, expect, test } from 'vitest';
import { countingGpu } from './counting.ts';
import { params, SUBMIT_EVERY } from './runtime.ts';

describe('chunked submission', () => {
  test('a submit every SUBMIT_EVERY dispatches, one pass each, and the rest at flush', () => {
    const { gpu, counts } = countingGpu();
    const k = gpu.kernel('noop', '@compute @workgroup_size(1) fn main() {}');
    const t = gpu.tensor('t', 'scratch', 16);
    const n = 2 * SUBMIT_EVERY + 10;
    for (let i = 0; i < n; i++) gpu.dispatch(k, [t], params([1]), [1]);
    expect(counts.submits).toBe(2); // submitted while recording
    expect(counts.passes).toBe(3); // the third, begun, holds the last 10
    gpu.flush();
    expect(counts).toMatchObject({ dispatches: n, submits: 3, passes: 3 });
  });

  test('a flush restarts the count: a step that flushes often never splits early', () => {
    const { gpu, counts } = countingGpu();
    const k = gpu.kernel('noop', '@compute @workgroup_size(1) fn main() {}');
    const t = gpu.tensor('t', 'scratch', 16);
    for (let s = 0; s < 3; s++) {
      for (let i = 0; i < SUBMIT_EVERY - 1; i++) gpu.dispatch(k, [t], params([1]), [1]);
      gpu.flush();
    }
    expect(counts).toMatchObject({ submits: 3, passes: 3 });
  });
});
