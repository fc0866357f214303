// Measures what a merged export holds in JS memory: writes the ~135 MB synthetic checkpoint
// (src/node/synthetic-model.ts), merges an all-linear rank-8 adapter into it, and records live memory
// (after a forced GC that has settled) as each tensor's bytes are written and as each shard closes. Streaming means the
// peak stays near the largest single tensor. Run with `node --expose-gc` (scripts/merge-heap-check.mjs);
// prints one JSON line.
import { mkdir, mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openModelFolder } from '../io/model-folder.ts';
import { adapterTensorSpecs, loraConfig } from '../io/peft.ts';
import { parseModelConfig } from '../model/config.ts';
import { writeMergedWeights } from '../export/merge.ts';
import { rng } from '../rng.ts';
import { directorySources } from './fs-source.ts';
import { SYNTHETIC_CONFIG, settledLive, writeSyntheticCheckpoint } from './synthetic-model.ts';

export async function mergeHeapCheck(): Promise<Record<string, number | boolean>> {
  const dir = await mkdtemp(join(tmpdir(), 'webtune-merge-heap-'));
  try {
    const base = join(dir, 'base'), out = join(dir, 'out');
    await mkdir(base);
    await mkdir(out);
    const { fileBytes, largestTensorBytes } = await writeSyntheticCheckpoint(base);
    const config = parseModelConfig(SYNTHETIC_CONFIG);
    const lora = loraConfig({ loraDropout: 0, r: 8, loraAlpha: 16, targetModules: 'all-linear' });
    const specs = adapterTensorSpecs(config, lora);
    const r = rng(1);
    const weights = new Map(specs.map((s) => [s.key, Float32Array.from({ length: s.shape[0] * s.shape[1] }, () => r() - 0.5)]));
    const adapterBytes = [...weights.values()].reduce((a, w) => a + w.byteLength, 0);
    const folder = await openModelFolder(await directorySources(base));
    const baseline = await settledLive();
    let peak = baseline, written = 0;
    const result = await writeMergedWeights(folder, config, { config: lora, specs, weights }, async (name) => {
      const fh = await open(join(out, name), 'w');
      return {
        async write(chunk) {
          peak = Math.max(peak, await settledLive()); // the tensor being written is alive here
          written += chunk.length;
          await fh.write(chunk);
        },
        async close() {
          peak = Math.max(peak, await settledLive());
          await fh.close();
        },
      };
    });
    return {
      fileBytes, writtenBytes: written, largestTensorBytes, adapterBytes, mergedTensors: result.merged.length,
      baselineBytes: baseline, peakLiveBytes: peak, heldBytes: peak - baseline, gcForced: typeof (globalThis as { gc?: unknown }).gc === 'function',
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
