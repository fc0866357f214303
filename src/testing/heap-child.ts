// Runs a heap-measuring script in a child Node process and returns its last JSON line. A child, so
// --expose-gc can force collections and the measure is live memory only. V8 normally frees
// ArrayBuffer memory on background threads after gc(); on a busy machine that sweep lags and a
// reading counts garbage buffers (CI once saw 2x the largest tensor, a quiet machine 1x). Sweeping
// on the main thread makes gc() return with the memory already freed.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';

export const HEAP_CHECK_NODE_FLAGS = ['--expose-gc', '--single-threaded-gc', '--no-concurrent-array-buffer-sweeping'];

/** What scripts/heap-check.mjs and scripts/merge-heap-check.mjs print (merge adds the last two). */
export interface HeapReport {
  gcForced: boolean;
  fileBytes: number;
  largestTensorBytes: number;
  heldBytes: number;
  writtenBytes?: number;
  mergedTensors?: number;
}

export async function runHeapScript(scriptName: string): Promise<HeapReport> {
  const script = fileURLToPath(new URL(`../../scripts/${scriptName}`, import.meta.url));
  const { stdout } = await promisify(execFile)(process.execPath, [...HEAP_CHECK_NODE_FLAGS, script], { maxBuffer: 1 << 20 });
  return JSON.parse(stdout.trim().split('\n').at(-1)!);
}
