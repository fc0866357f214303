// Measures what loading a model holds in the JS heap: writes a synthetic Llama checkpoint of about
// 135 MB (f32) to a temporary folder, tensor by tensor, then loads it with NF4 quantization and
// records live memory (V8 heap + ArrayBuffers, after a forced GC) at every tensor. Streaming means
// the peak stays near the largest single tensor, not the model. Run with `node --expose-gc`
// (scripts/heap-check.mjs); prints one JSON line.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Gpu } from '../gpu/runtime.ts';
import { openModelFolder } from '../io/model-folder.ts';
import { openModel } from '../model/open.ts';
import { directorySources } from './fs-source.ts';
import { live, writeSyntheticCheckpoint } from './synthetic-model.ts';

export async function heapCheck(): Promise<Record<string, number | boolean>> {
  const dir = await mkdtemp(join(tmpdir(), 'webtune-heap-'));
  try {
    const { fileBytes, largestTensorBytes: largest } = await writeSyntheticCheckpoint(dir);
    const gpu = await Gpu.create();
    try {
      const baseline = live();
      let peak = baseline;
      const folder = await openModelFolder(await directorySources(dir));
      await openModel(gpu, folder, { quant: 'nf4', batch: 1, seqLen: 16, training: false }, () => {
        peak = Math.max(peak, live());
      });
      peak = Math.max(peak, live());
      return { fileBytes, largestTensorBytes: largest, baselineBytes: baseline, peakLiveBytes: peak, heldBytes: peak - baseline, gcForced: typeof (globalThis as { gc?: unknown }).gc === 'function' };
    } finally {
      gpu.destroy();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
