// The engine behind the site, in Node on a real WebGPU device: the demo model served by a fake
// fetch (with HTTP Range) from public/models/demo, an in-memory IndexedDB stand-in. Loading and
// caching, the second load from the cache alone, training with checkpoints, resume in a new engine
// (a reload), device loss, corrupt and over-quota caches, adapter export/import, generation.
import { afterAll, describe, expect, test } from 'vitest';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { memoryStore, type KeyValueStore } from '../io/cache.ts';
import { Engine, type EngineHost } from './engine.ts';
import type { LoadEvent, TrainEvent, TrainOptions } from './api.ts';
import { ModelFileError, ModelTooLargeError, WebtuneError } from '../errors.ts';
import { Gpu } from '../gpu/runtime.ts';
import type { FitSettings } from '../app/fit.ts';

const demoDir = fileURLToPath(new URL('../../public/models/demo/', import.meta.url));
const sample = readFileSync(fileURLToPath(new URL('../../public/samples/baking-cups-to-grams.jsonl', import.meta.url)), 'utf8');
const DEMO = 'http://site.test/models/demo/';

/** Serves the demo folder like a static server that honours Range; records every URL. */
function fakeFetch(log: string[]) {
  return async (url: string, init?: RequestInit): Promise<Response> => {
    log.push(url);
    if (!url.startsWith(DEMO)) return new Response('no', { status: 404 });
    let bytes: Uint8Array;
    try {
      bytes = readFileSync(demoDir + url.slice(DEMO.length));
    } catch {
      return new Response('missing', { status: 404 });
    }
    const range = new Headers(init?.headers).get('range');
    const m = range ? /bytes=(\d+)-(\d+)/.exec(range) : null;
    if (!m) return new Response(bytes as Uint8Array<ArrayBuffer>, { status: 200, headers: { 'content-length': String(bytes.length) } });
    const a = Number(m[1]), b = Math.min(Number(m[2]), bytes.length - 1);
    return new Response(bytes.slice(a, b + 1), { status: 206, headers: { 'content-range': `bytes ${a}-${b}/${bytes.length}` } });
  };
}

const gpus: Gpu[] = [];
let shared: Promise<Gpu> | undefined;
/** The host's createGpu hands the test each device the engine gets (`gpu`: the latest), so the test
 *  can lose it the way a driver reset would; the engine's API has no test hook. Engines share one
 *  device (each new device compiles every kernel again, about 10 s on SwiftShader; an engine keeps
 *  nothing on the device that another engine could see) unless `own`: the engine that loses its
 *  device gets devices of its own. */
function host(store: KeyValueStore, log: string[], own = false): EngineHost & { gpu?: Gpu } {
  const fresh = async () => {
    const g = await Gpu.create();
    gpus.push(g);
    return g;
  };
  const h: EngineHost & { gpu?: Gpu } = {
    store, fetch: fakeFetch(log), demoUrl: DEMO, maxPositions: 256,
    createGpu: async () => (h.gpu = await (own ? fresh() : (shared ??= fresh()))),
  };
  return h;
}
afterAll(() => {
  for (const g of gpus) g.destroy();
});

const TRAIN: TrainOptions = {
  rank: 4, alpha: 8, dropout: 0, rslora: false, targets: ['q_proj', 'v_proj'], lr: 1e-2, epochs: 1, maxSteps: 4, batch: 1, gradAccum: 1,
  seqLen: 64, schedule: 'constant', warmupSteps: 0, weightDecay: 0, maxGradNorm: 1, seed: 1, checkpointing: false, checkpointEvery: 2,
};
const DATA = { seqLen: 64, validation: 0, skipBadRows: true, seed: 0 };
const file = () => new File([sample.split('\n').slice(0, 12).join('\n')], 'baking.jsonl');

describe('engine: model cache', () => {
  const store = memoryStore();
  test('first load downloads, quantizes and caches; a second engine loads from IndexedDB with no request', async () => {
    const log: string[] = [];
    const events: LoadEvent[] = [];
    const e1 = new Engine(host(store, log));
    const info = await e1.loadModel({ kind: 'demo' }, 'nf4', (e) => events.push(e));
    expect(info.fromCache).toBe(false);
    expect(info).toMatchObject({ key: 'demo:nf4', arch: 'llama', layers: 2, hiddenSize: 64, vocabSize: 32000, quant: 'nf4', hasChatTemplate: true });
    expect(log.some((u) => u.endsWith('model.safetensors'))).toBe(true);
    for (const phase of ['download', 'quantize', 'cache']) expect(events.some((e) => e.phase === phase)).toBe(true);
    const dl = events.filter((e): e is Extract<LoadEvent, { phase: 'download' }> => e.phase === 'download' && e.file === 'model.safetensors');
    expect(dl.at(-1)!.loaded).toBeLessThanOrEqual(dl.at(-1)!.total);
    const cached = await e1.listCachedModels();
    expect(cached).toHaveLength(1);
    expect(cached[0]).toMatchObject({ key: 'demo:nf4', revision: null });
    expect(cached[0].bytes).toBeGreaterThan(32000 * 64 * 4); // the f32 embedding alone
    const base1 = await e1.generate('Flour', { adapter: false, chat: false, maxNewTokens: 2, temperature: 0, topK: 0, topP: 1, seed: 0 }, () => {});

    const log2: string[] = [];
    const e2 = new Engine(host(store, log2));
    const ev2: LoadEvent[] = [];
    const info2 = await e2.loadModel({ kind: 'demo' }, 'nf4', (e) => ev2.push(e));
    expect(info2.fromCache).toBe(true);
    expect(info2.origin).toEqual({ kind: 'demo' }); // where it can be read again in another form
    expect(log2).toEqual([]);
    expect(ev2.every((e) => e.phase === 'upload')).toBe(true);
    // Same weights: the same greedy completion.
    const base2 = await e2.generate('Flour', { adapter: false, chat: false, maxNewTokens: 2, temperature: 0, topK: 0, topP: 1, seed: 0 }, () => {});
    expect(base2).toBe(base1);
  }, 600_000);

  test('a corrupt shard is refused with the shard named, and the entry is dropped', async () => {
    const s = memoryStore();
    await new Engine(host(s, [])).loadModel({ kind: 'demo' }, 'nf4', () => {});
    const k = [...s.data.keys()].find((x) => x.endsWith('/shard/layer.1'))!;
    const bytes = (s.data.get(k) as Uint8Array).slice();
    bytes[100] ^= 0xff;
    s.data.set(k, bytes);
    const e = new Engine(host(s, []));
    const err = await e.loadModel({ kind: 'cached', key: 'demo:nf4' }, 'nf4', () => {}).catch((x) => x);
    expect(err).toBeInstanceOf(ModelFileError);
    expect(err.message).toMatch(/shard layer\.1 does not match its SHA-256/);
    expect(err.details.reason).toBe('cache-corrupt');
    expect(await e.listCachedModels()).toEqual([]);
    expect([...s.data.keys()].filter((x) => x.startsWith('model/'))).toEqual([]);
  });

  test('QuotaExceededError while caching becomes a typed error and leaves no entry', async () => {
    const s = memoryStore();
    const quota: KeyValueStore = {
      ...s,
      set: async (k, v) => {
        if (k.includes('/shard/layer.')) throw new DOMException('The quota has been exceeded.', 'QuotaExceededError');
        return s.set(k, v);
      },
    };
    const err = await new Engine(host(quota, [])).loadModel({ kind: 'demo' }, 'nf4', () => {}).catch((x) => x);
    expect(err).toBeInstanceOf(WebtuneError);
    expect(err.code).toBe('storage-quota');
    expect(err.hint).toMatch(/delete cached models/);
    expect(s.data.size).toBe(0);
  });
});

describe('engine: fit check', () => {
  test('a load whose run would not fit is refused after config.json, with the plan the estimate gives; the suggestion loads in its form', async () => {
    const asked: TrainOptions = { ...TRAIN, storage: 'f32', batch: 4, seqLen: 128 };
    const e1 = new Engine(host(memoryStore(), []));
    await e1.loadModel({ kind: 'demo' }, 'nf4', () => {});
    const budget = (await e1.estimate({ ...asked, storage: 'f16', checkpointing: true })).peakBytes;
    const est = await e1.estimate(asked, budget);
    expect(est.fits).toBe(false);
    expect(est.budget).toBe(budget);
    expect(est.suggestion!.peakBytes).toBeLessThanOrEqual(budget);
    expect((await e1.estimate({ ...asked, ...est.suggestion!.settings }, budget)).fits).toBe(true);

    const log: string[] = [];
    const e2 = new Engine(host(memoryStore(), log));
    const err = await e2.loadModel({ kind: 'demo' }, 'nf4', () => {}, { options: asked, budget }).catch((x: unknown) => x);
    expect(err).toBeInstanceOf(ModelTooLargeError);
    const d = (err as ModelTooLargeError).details;
    expect(d.byCategory).toEqual(est.bytes); // the run's form is e1's: f32 tables, no double quantization
    expect(d.peakBytes).toBe(est.peakBytes);
    expect(log).toEqual([DEMO + 'config.json']);
    expect(await e2.listCachedModels()).toEqual([]);
    // The suggested settings load, in the form they name (a suggestion may change the tables' storage
    // or double quantization: the model is loaded and cached that way), and fit as the error said.
    const s = (d.suggestion as { settings: FitSettings; peakBytes: number });
    const ok = await e2.loadModel({ kind: 'demo' }, 'nf4', () => {}, { options: { ...asked, ...s.settings }, budget });
    expect(ok.layers).toBe(2);
    expect(ok.form).toEqual({ storage: s.settings.storage, doubleQuant: s.settings.doubleQuant });
    expect((await e2.listCachedModels()).map((c) => c.form)).toEqual([ok.form]);
    const after = await e2.estimate({ ...asked, ...s.settings }, budget);
    expect(after.fits).toBe(true);
    expect(after.peakBytes).toBe(s.peakBytes);
  });

  test('the fit meter plans the form\'s run for every named shape on this device', async () => {
    const e = new Engine(host(memoryStore(), []));
    const opts: TrainOptions = { ...TRAIN, seqLen: 128, storage: 'f16' }; // the host loads 256 RoPE rows
    const budget = 6.5 * 1024 ** 3;
    const table = await e.fitTable(opts, budget);
    const by = Object.fromEntries(table.map((r) => [r.shape, r]));
    expect(Object.keys(by)).toEqual(expect.arrayContaining(['smollm2-135m', 'llama-3.2-1b', 'llama-3.2-3b', 'llama-3-8b']));
    expect(by['smollm2-135m'].fits).toBe(true);
    expect(by['llama-3.2-1b'].peakBytes).toBeLessThan(by['llama-3.2-3b'].peakBytes);
    expect(by['llama-3.2-3b'].peakBytes).toBeLessThan(by['llama-3-8b'].peakBytes);
    for (const r of table) {
      expect(r.fits).toBe(r.over === undefined);
      if (r.over === 'budget') expect(r.peakBytes).toBeGreaterThan(budget);
      if (r.fits) expect(r.peakBytes).toBeLessThanOrEqual(budget);
      if (r.suggestion) expect(r.suggestion.peakBytes).toBeLessThanOrEqual(budget);
    }
    // The site loads the form's run's form: with f16 tables the 8B's weights are under 6.5 GiB, and
    // with double quantization and checkpointing the whole run fits.
    expect(by['llama-3-8b'].byCategory.weights).toBeLessThan(budget);
    const saving = Object.fromEntries((await e.fitTable({ ...opts, doubleQuant: true, checkpointing: true }, budget)).map((r) => [r.shape, r]));
    expect(saving['llama-3-8b'].fits).toBe(true);
    expect(saving['llama-3-8b'].byCategory.weights).toBeLessThan(by['llama-3-8b'].byCategory.weights);
  });
});

describe('engine: training', () => {
  test('the storage option reaches the run plan: f16 saved activations take fewer bytes, the loaded tables stay', async () => {
    const e = new Engine(host(memoryStore(), []));
    await e.loadModel({ kind: 'demo' }, 'nf4', () => {});
    await e.prepareDataset(file(), DATA);
    const [f32, f16] = [await e.estimate({ ...TRAIN, storage: 'f32' }), await e.estimate({ ...TRAIN, storage: 'f16' })];
    expect(f16.bytes.activations).toBeLessThan(f32.bytes.activations);
    expect(f16.bytes.weights).toBe(f32.bytes.weights);
    expect(await e.estimate(TRAIN)).toEqual(f32); // absent: f32, as runs saved before the option trained
  });

  test('packing: the estimate counts packed rows; a packed run resumes from its checkpoint to the same adapter', async () => {
    // Twelve short examples (about 25 to 30 tokens each with the seed template) pack two to a row of 64.
    const cups = ['1 cup', '2 cups', '1/2 cup', '3 cups', '1/4 cup', '2/3 cup', '4 cups', '3/4 cup', '1/3 cup', '5 cups', '6 cups', '1/8 cup'];
    const short = () => new File([cups.map((c) => JSON.stringify({ instruction: `${c} of sugar?`, response: `${c} is sugar.` })).join('\n')], 'short.jsonl');
    const PACKED: TrainOptions = { ...TRAIN, packing: true, maxSteps: 2, checkpointEvery: 1 };
    const store = memoryStore();
    const e1 = new Engine(host(store, []));
    await e1.loadModel({ kind: 'demo' }, 'nf4', () => {});
    expect((await e1.prepareDataset(short(), DATA)).trainExamples).toBe(12);
    const plain = await e1.estimate({ ...PACKED, packing: false, maxSteps: undefined });
    const packed = await e1.estimate({ ...PACKED, maxSteps: undefined });
    expect(plain).toMatchObject({ trainRows: 12, totalSteps: 12 });
    expect(packed.trainRows).toBeLessThanOrEqual(6);
    expect(packed.totalSteps).toBe(packed.trainRows);
    expect(packed.bytes).toEqual(plain.bytes); // the same rows of seqLen: the same plan

    await e1.train(PACKED, (e) => {
      if (e.type === 'step' && e.log.step === 1) void e1.pause();
    });
    expect(await e1.pendingCheckpoint()).toMatchObject({ step: 1, totalSteps: 2, options: { packing: true } });
    const e2 = new Engine(host(store, []));
    const ev2: TrainEvent[] = [];
    await e2.resumeTraining((e) => ev2.push(e));
    expect(ev2).toContainEqual({ type: 'done', step: 2 });
    const steps = ev2.filter((e) => e.type === 'step').map((e) => (e as { log: { tokens: number } }).log);
    for (const l of steps) expect(l.tokens).toBeGreaterThan(32); // several examples in the step's one row

    const e3 = new Engine(host(memoryStore(), []));
    await e3.loadModel({ kind: 'demo' }, 'nf4', () => {});
    await e3.prepareDataset(short(), DATA);
    await e3.train(PACKED, () => {});
    expect((await e2.exportAdapter())['adapter_model.safetensors']).toEqual((await e3.exportAdapter())['adapter_model.safetensors']);
  }, 900_000);

  test('train, pause with a checkpoint, resume in a new engine, device loss, export/import', async () => {
    const store = memoryStore();
    const e1 = new Engine(host(store, []));
    await e1.loadModel({ kind: 'demo' }, 'nf4', () => {});
    const summary = await e1.prepareDataset(file(), DATA);
    expect(summary).toMatchObject({ format: 'jsonl', shape: 'seed', trainExamples: 12, validationExamples: 0 });
    expect(summary.preview[0].tokens.some((t) => t.trained)).toBe(true);
    const est = await e1.estimate(TRAIN);
    expect(est.totalSteps).toBe(4);
    expect(est.fits).toBe(true);
    expect(est.bytes.optimizer).toBeGreaterThan(0);

    const ev1: TrainEvent[] = [];
    await e1.train(TRAIN, (e) => {
      ev1.push(e);
      if (e.type === 'step' && e.log.step === 3) void e1.pause();
    });
    expect(ev1.filter((e) => e.type === 'step').map((e) => (e as { log: { step: number } }).log.step)).toEqual([1, 2, 3]);
    expect(ev1.filter((e) => e.type === 'checkpoint').map((e) => (e as { step: number }).step)).toEqual([2, 3]);
    expect(ev1.at(-1)).toEqual({ type: 'paused', step: 3 });
    const step1 = ev1.find((e) => e.type === 'step') as Extract<TrainEvent, { type: 'step' }>;
    expect(step1.gpuBytes.lora).toBeGreaterThan(0);
    expect(await e1.pendingCheckpoint()).toMatchObject({ modelKey: 'demo:nf4', step: 3, totalSteps: 4, datasetFile: 'baking.jsonl' });
    expect((await e1.metricsCsv()).split('\n')[0]).toBe('step,loss,val_loss,lr,grad_norm,tokens_per_s');

    // A reload: a new engine with the same store resumes from step 3, replaying the curve first.
    const e2 = new Engine(host(store, []));
    const ev2: TrainEvent[] = [];
    await e2.resumeTraining((e) => ev2.push(e));
    const steps2 = ev2.filter((e) => e.type === 'step').map((e) => (e as { log: { step: number; loss: number } }).log);
    expect(steps2.map((l) => l.step)).toEqual([1, 2, 3, 4]);
    expect(steps2.slice(0, 3).map((l) => l.loss)).toEqual(ev1.filter((e) => e.type === 'step').map((e) => (e as { log: { loss: number } }).log.loss));
    // A finished run ends with 'done', then goes into the adapter library ('saved').
    expect(ev2.slice(-2)).toEqual([{ type: 'done', step: 4 }, { type: 'saved', id: expect.any(String), name: 'baking · 4 steps, loss ' + steps2[3].loss.toFixed(3) }]);

    // The same run without interruption ends with the same adapter (resume equivalence).
    const e3 = new Engine(host(memoryStore(), []));
    await e3.loadModel({ kind: 'demo' }, 'nf4', () => {});
    await e3.prepareDataset(file(), DATA);
    await e3.train(TRAIN, () => {});
    const a2 = await e2.exportAdapter(), a3 = await e3.exportAdapter();
    expect(a2['adapter_model.safetensors']).toEqual(a3['adapter_model.safetensors']);

    // Import into a fresh engine: the same bytes come back out, and the adapter changes the output.
    const e4 = new Engine(host(store, []));
    await e4.loadModel({ kind: 'cached', key: 'demo:nf4' }, 'nf4', () => {});
    const imported = await e4.importAdapter([
      new File([a2['adapter_config.json'] as Uint8Array<ArrayBuffer>], 'adapter_config.json'),
      new File([a2['adapter_model.safetensors'] as Uint8Array<ArrayBuffer>], 'adapter_model.safetensors'),
    ]);
    // Imported files without a run record join the library under a dated name.
    expect(imported).toEqual({ id: expect.any(String), name: expect.stringMatching(/^Imported adapter \d{4}-\d\d-\d\d/), rank: 4, targets: ['q_proj', 'v_proj'] });
    expect((await e4.listAdapters()).current).toBe(imported.id);
    expect((await e4.exportAdapter())['adapter_model.safetensors']).toEqual(a2['adapter_model.safetensors']);
    // Two tokens (the prompt's pass and one cached step) already differ; each more costs about 3 s here.
    const g = { chat: false, maxNewTokens: 2, temperature: 0, topK: 0, topP: 1, seed: 0 };
    const tuned = await e4.generate('How much does 1 cup of flour weigh?', { ...g, adapter: true }, () => {});
    const plain = await e4.generate('How much does 1 cup of flour weigh?', { ...g, adapter: false }, () => {});
    expect(tuned).not.toBe(plain);

    // Device loss mid-run: a new device, the model from the cache, the run from its last checkpoint.
    const h5 = host(store, [], true);
    const e5 = new Engine(h5);
    await e5.loadModel({ kind: 'demo' }, 'nf4', () => {});
    await e5.prepareDataset(file(), DATA);
    const ev5: TrainEvent[] = [];
    await e5.train(TRAIN, (e) => {
      ev5.push(e);
      if (e.type === 'step' && e.log.step === 3 && !ev5.some((x) => x.type === 'device-lost')) h5.gpu!.device.destroy();
    });
    expect(ev5.find((e) => e.type === 'device-lost')).toEqual({ type: 'device-lost', resumedFromStep: 2 });
    expect(ev5.slice(-2).map((e) => e.type)).toEqual(['done', 'saved']);
    expect(ev5.at(-2)).toEqual({ type: 'done', step: 4 });
    const a5 = await e5.exportAdapter();
    expect(a5['adapter_model.safetensors']).toEqual(a3['adapter_model.safetensors']);
  }, 900_000);
});
