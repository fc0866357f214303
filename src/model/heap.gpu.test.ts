// Loading streams: the JS heap holds about one tensor at a time, not the model (issue: "peak JS
// heap while loading a 100 MB+ model must stay near the largest single tensor").
import { describe, expect, test } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';

describe('loading a 134 MB checkpoint', () => {
  test('holds at most about one tensor in JS memory', async () => {
    const script = fileURLToPath(new URL('../../scripts/heap-check.mjs', import.meta.url));
    // A child process, so --expose-gc can force collections and the measure is live memory only.
    const { stdout } = await promisify(execFile)(process.execPath, ['--expose-gc', script], { maxBuffer: 1 << 20 });
    const r = JSON.parse(stdout.trim().split('\n').at(-1)!);
    expect(r.gcForced).toBe(true);
    expect(r.fileBytes).toBeGreaterThan(100e6);
    expect(r.heldBytes).toBeLessThan(2 * r.largestTensorBytes);
  });
});
