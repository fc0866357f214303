// `webtune data` in the memory of a few rows, however long the file (issue 12: a 200,000-row JSONL
// once peaked at 533-654 MiB, 1.2-1.8 KiB a row, because every tokenized example was kept). The same
// pipeline over 10,000 and 50,000 streamed rows, each in a child with --expose-gc
// (scripts/data-memory.mjs): the live memory after collection and the peak RSS must not grow with
// the rows. Kept examples would add about 1 KiB a row to both, some 40 MiB between the two runs.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import type { DataMemoryReport } from '../node/data-memory.ts';
import { HEAP_CHECK_NODE_FLAGS } from '../testing/heap-child.ts';

const MiB = 2 ** 20;

async function measure(rows: number): Promise<DataMemoryReport> {
  const script = fileURLToPath(new URL('../../scripts/data-memory.mjs', import.meta.url));
  const { stdout } = await promisify(execFile)(process.execPath, [...HEAP_CHECK_NODE_FLAGS, script, String(rows)], { maxBuffer: 1 << 20 });
  return JSON.parse(stdout.trim().split('\n').at(-1)!);
}

describe('webtune data memory', () => {
  it('stays flat from 10,000 to 50,000 rows: live memory within 2 MiB, peak RSS within 32 MiB', async () => {
    const short = await measure(10_000);
    const long = await measure(50_000);
    const show = (r: DataMemoryReport) => `${r.rows} rows: live ${(r.liveFirstBytes / MiB).toFixed(1)}-${(r.livePeakBytes / MiB).toFixed(1)} MiB, peak RSS ${(r.peakRssBytes / MiB).toFixed(0)} MiB`;
    const report = `${show(short)}; ${show(long)}`;
    expect([short.examples, long.examples]).toEqual([10_000, 50_000]);
    // Within the long run: from 1,000 rows in to the end, nothing accumulates.
    expect(long.livePeakBytes - long.liveFirstBytes, report).toBeLessThan(2 * MiB);
    expect(long.livePeakBytes - short.livePeakBytes, report).toBeLessThan(2 * MiB);
    // RSS also counts V8's own heap sizing and the allocator's free pages: a looser bound, still well
    // under what keeping 40,000 more examples costs.
    expect(long.peakRssBytes - short.peakRssBytes, report).toBeLessThan(32 * MiB);
  }, 180_000);
});
