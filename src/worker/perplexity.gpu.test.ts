// Validation perplexity as the site shows it (TrainPanel: exp of the run's last validation loss,
// formatPerplexity) computed by the engine on the demo model, against `webtune eval` of the same
// adapter on the same held-out rows: the CLI reads the exported PEFT files and the rows from disk,
// loads the base again and evaluates in its own batches. The run is also saved in the adapter
// library with its record (dataset identity, steps, final and validation loss).
import { afterAll, expect, test, vi } from 'vitest';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { memoryStore } from '../io/cache.ts';
import type { Gpu } from '../gpu/runtime.ts';
import { shuffled, splitValidation } from '../data/batch.ts';
import { formatPerplexity } from '../ui/format.ts';
import { main } from '../node/cli.ts';
import { DEMO_DIR, demoHost } from '../testing/demo-host.ts';
import { Engine } from './engine.ts';
import type { TrainEvent, TrainOptions } from './api.ts';

const gpus: Gpu[] = [];
let tmp: string | undefined;
afterAll(async () => {
  for (const g of gpus) g.destroy();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

// A guard, not a pace: two training steps, a validation pass and a CLI eval of the demo model on
// SwiftShader, on a machine shared with other test runs.
const GUARD_MS = 900_000;
const SEQ = 64, SEED = 3, VALIDATION = 0.34;

test('the validation perplexity the site shows equals exp of webtune eval\'s loss on the held-out rows', async () => {
  const sample = await readFile(fileURLToPath(new URL('../../public/samples/baking-cups-to-grams.jsonl', import.meta.url)), 'utf8');
  const lines = sample.split('\n').filter((l) => l.trim()).slice(0, 6);
  const text = lines.join('\n') + '\n';
  const e = new Engine(demoHost(memoryStore(), [], gpus));
  await e.loadModel({ kind: 'demo' }, 'nf4', () => {});
  const summary = await e.prepareDataset(new File([text], 'cups.jsonl'), { seqLen: SEQ, validation: VALIDATION, skipBadRows: false, seed: SEED });
  // The engine's split, as its TRL export rebuilds it: the rows shuffled by the seed, the last ones held out.
  const held = splitValidation(shuffled(lines, SEED), VALIDATION).validation;
  expect(summary.validationExamples).toBe(held.length);
  expect(summary.trainExamples).toBe(lines.length - held.length);

  const opts: TrainOptions = {
    rank: 4, alpha: 8, dropout: 0, rslora: false, targets: ['q_proj', 'v_proj'], lr: 1e-2, epochs: 1, batch: 2, gradAccum: 1,
    seqLen: SEQ, schedule: 'constant', warmupSteps: 0, weightDecay: 0, maxGradNorm: 1, seed: SEED, checkpointing: false, checkpointEvery: 100,
    storage: 'f32',
  };
  const events: TrainEvent[] = [];
  await e.train(opts, (ev) => void events.push(ev));
  const steps = events.flatMap((ev) => (ev.type === 'step' ? [ev.log] : []));
  expect(steps.map((s) => s.step)).toEqual([1, 2]);
  const valLoss = steps[1].val_loss!;
  expect(Number.isFinite(valLoss)).toBe(true);
  const saved = events.find((ev) => ev.type === 'saved') as Extract<TrainEvent, { type: 'saved' }>;
  expect(saved).toBeDefined();

  // The library entry and its run record.
  const { entries, current } = await e.listAdapters();
  expect(current).toBe(saved.id);
  const entry = entries.find((x) => x.id === saved.id)!;
  expect(entry).toMatchObject({ origin: 'trained', rank: 4, targets: ['q_proj', 'v_proj'] });
  expect(entry.record!.dataset).toMatchObject({ file: 'cups.jsonl', sha256: createHash('sha256').update(text).digest('hex'), trainExamples: 4, validationExamples: 2 });
  expect(entry.record!.final).toEqual({ step: 2, loss: steps[1].loss, valLoss });

  // webtune eval of the exported adapter on the held-out rows, in f32 like the run.
  tmp = await mkdtemp(join(tmpdir(), 'webtune-ppl-'));
  const dir = join(tmp, 'adapter');
  await mkdir(dir);
  for (const [name, bytes] of Object.entries(await e.exportLibraryAdapter(saved.id, 'peft'))) await writeFile(join(dir, name), bytes);
  const heldFile = join(tmp, 'held-out.jsonl');
  await writeFile(heldFile, held.join('\n') + '\n');
  let out = '', err = '';
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => ((out += String(s)), true));
  const se = vi.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => ((err += String(s)), true));
  const l = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void (out += a.join(' ') + '\n'));
  let code: number;
  try {
    code = await main(['eval', '--model', DEMO_DIR, '--adapter', dir, '--data', heldFile, '--seq-len', String(SEQ), '--storage', 'f32', '--json']);
  } finally {
    o.mockRestore();
    se.mockRestore();
    l.mockRestore();
  }
  expect(code, err).toBe(0);
  const r = JSON.parse(out.trim().split('\n').at(-1)!) as { loss: number; perplexity: number; tokens: number };
  expect(r.tokens).toBeGreaterThan(0);
  // The same NF4 base, adapter and tokens in f32: the two means differ only in f32 summation order.
  expect(Math.abs(valLoss - r.loss) / r.loss).toBeLessThan(1e-5);
  expect(Math.abs(Math.exp(valLoss) - r.perplexity) / r.perplexity).toBeLessThan(1e-5);
  expect(formatPerplexity(valLoss)).toBe(formatPerplexity(r.loss));
}, GUARD_MS);
