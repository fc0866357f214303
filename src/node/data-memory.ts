// What `webtune data` holds while it reads a long file: `rows` generated instruction/response rows,
// streamed (never held whole), through reportDataset() as the command runs it. Every 1,000 rows a
// forced collection measures the live memory (JS heap and array buffers); the process's peak RSS
// comes from the OS. Run in a child with --expose-gc (scripts/data-memory.mjs); src/data/
// data-memory.test.ts compares a short and a long file: nothing may grow with the row count.
import { reportDataset } from '../data/pipeline.ts';
import { chars } from '../testing/char-tokenizer.ts';

export interface DataMemoryReport {
  rows: number;
  examples: number;
  /** Live bytes (heapUsed + arrayBuffers after gc) at the first sample, 1,000 rows in. */
  liveFirstBytes: number;
  /** The most live bytes seen at any sample. */
  livePeakBytes: number;
  peakRssBytes: number;
  seconds: number;
}

const TOPICS = ['tides', 'bread', 'comets', 'bees', 'glaciers', 'violins', 'lichens', 'volcanoes'];

/** JSONL rows of about 80 bytes, made 500 at a time as the reader pulls them. */
function rowStream(rows: number): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  let i = 0;
  return new ReadableStream<Uint8Array>({
    pull(c) {
      if (i >= rows) return c.close();
      const lines: string[] = [];
      for (const end = Math.min(rows, i + 500); i < end; i++) {
        lines.push(JSON.stringify({ instruction: `What about ${TOPICS[i % 8]} ${i}?`, response: `Item ${i}: ${TOPICS[(i * 3) % 8]} change.` }));
      }
      c.enqueue(enc.encode(lines.join('\n') + '\n'));
    },
  });
}

export async function dataMemory(rows: number): Promise<DataMemoryReport> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with node --expose-gc');
  const live = () => {
    gc();
    const m = process.memoryUsage();
    return m.heapUsed + m.arrayBuffers;
  };
  const samples: number[] = [];
  const t0 = performance.now();
  // No validation split and no packing, as `webtune data` runs by default; packing a split keeps
  // 4 bytes per example (see reportDataset).
  const r = await reportDataset({ name: 'generated.jsonl', data: rowStream(rows) }, chars, { maxLength: 128, onProgress: () => samples.push(live()) });
  return {
    rows,
    examples: r.stats.examples,
    liveFirstBytes: samples[0],
    livePeakBytes: Math.max(...samples),
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    seconds: (performance.now() - t0) / 1000,
  };
}
