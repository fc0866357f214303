// Loading streams: the JS heap holds about one tensor at a time, not the model (issue: "peak JS
// heap while loading a 100 MB+ model must stay near the largest single tensor").
import { describe, expect, test } from 'vitest';
import { runHeapScript } from '../testing/heap-child.ts';

describe('loading a 134 MB checkpoint', () => {
  test('holds at most about one tensor in JS memory', async () => {
    const r = await runHeapScript('heap-check.mjs');
    expect(r.gcForced).toBe(true);
    expect(r.fileBytes).toBeGreaterThan(100e6);
    expect(r.heldBytes).toBeGreaterThanOrEqual(r.largestTensorBytes); // the f32 tensor being read is alive
    expect(r.heldBytes).toBeLessThan(2 * r.largestTensorBytes);
  });
});
