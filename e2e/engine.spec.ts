import { expect, test, type Page } from 'playwright/test';
import type { Harness } from './engine-harness.ts';
import type { EngineApi, LoadEvent, TrainEvent, TrainOptions } from '../src/worker/api.ts';
import type { EngineTestHooks } from '../src/worker/dev-hooks.ts';
import type { Remote } from 'comlink';

// The engine worker's API in Chromium (WebGPU on SwiftShader), without the site's UI: IndexedDB
// caching with zero weight requests on the second load, checkpoint/resume across a page reload,
// recovery from a destroyed device, the quota error and a corrupt cached shard. Each test has a
// fresh browser context, so a fresh IndexedDB; page.reload() keeps it, as a real reload does.

declare global {
  interface Window {
    harness: Harness;
    api: Remote<EngineApi & EngineTestHooks>;
    events: (LoadEvent | TrainEvent)[];
  }
}

// Tiny runs: SwiftShader does a demo-model step (32k vocabulary) in seconds, not milliseconds. At
// sequence length 48 every sample row keeps at least 14 trained tokens after its seed-template prompt.
const TRAIN: TrainOptions = {
  rank: 4, alpha: 8, dropout: 0, rslora: false, targets: ['q_proj', 'v_proj'], lr: 1e-2, epochs: 1, maxSteps: 3, batch: 1, gradAccum: 1,
  seqLen: 48, schedule: 'constant', warmupSteps: 0, weightDecay: 0, maxGradNorm: 1, seed: 1, checkpointing: false, checkpointEvery: 1,
};

async function open(page: Page): Promise<void> {
  await page.goto('/e2e/engine.html');
  await page.waitForSelector('body[data-ready="true"]', { state: 'attached' });
  await page.evaluate(() => {
    window.api = window.harness.startEngine() as unknown as Remote<EngineApi & EngineTestHooks>;
    window.events = [];
  });
}

/** Requests for the demo model's files, from the page or its worker. */
function countModelRequests(page: Page): { urls: string[] } {
  const seen = { urls: [] as string[] };
  page.context().on('request', (r) => {
    if (r.url().includes('/models/demo/')) seen.urls.push(r.url());
  });
  return seen;
}

async function loadDemo(page: Page) {
  return page.evaluate(async () => {
    const { proxy } = window.harness;
    return window.api.loadModel({ kind: 'demo' }, 'nf4', proxy((e: LoadEvent) => void window.events.push(e)));
  });
}

async function prepare(page: Page) {
  return page.evaluate(async () => {
    const file = await window.harness.sampleFile(8);
    return window.api.prepareDataset(file, { seqLen: 48, validation: 0, skipBadRows: true, seed: 0 });
  });
}

test('the second load reads only IndexedDB: no request for the model files', async ({ page }) => {
  test.setTimeout(300_000);
  const requests = countModelRequests(page);
  await open(page);
  const first = await loadDemo(page);
  expect(first.fromCache).toBe(false);
  expect(requests.urls.some((u) => u.endsWith('/models/demo/model.safetensors'))).toBe(true);
  const phases = await page.evaluate(() => [...new Set(window.events.map((e) => (e as LoadEvent).phase))]);
  expect(phases).toEqual(expect.arrayContaining(['download', 'quantize', 'cache']));
  expect(await page.evaluate(() => window.api.listCachedModels())).toEqual([expect.objectContaining({ key: 'demo:nf4' })]);

  await page.reload();
  await page.waitForSelector('body[data-ready="true"]', { state: 'attached' });
  requests.urls.length = 0;
  await page.evaluate(() => {
    window.api = window.harness.startEngine() as unknown as Remote<EngineApi & EngineTestHooks>;
    window.events = [];
  });
  const second = await loadDemo(page);
  expect(second.fromCache).toBe(true);
  expect(requests.urls).toEqual([]);
  const phases2 = await page.evaluate(() => [...new Set(window.events.map((e) => (e as LoadEvent).phase))]);
  expect(phases2).toEqual(['upload']);
  const storage = await page.evaluate(() => window.api.storage());
  expect(storage.usage).toBeGreaterThan(0);
  expect(storage.quota).toBeGreaterThan(storage.usage);
});

test('a checkpoint survives a page reload and training resumes from its step', async ({ page }) => {
  test.setTimeout(600_000);
  await open(page);
  await loadDemo(page);
  await prepare(page);
  const ev = await page.evaluate(async (opts) => {
    const { proxy } = window.harness;
    const out: TrainEvent[] = [];
    await window.api.train(opts, proxy((e: TrainEvent) => {
      out.push(e);
      // Events reach the page while the worker goes on, so the pause lands after step 2 or 3.
      if (e.type === 'checkpoint' && e.step === 2) void window.api.pause();
    }));
    return out;
  }, { ...TRAIN, maxSteps: 4 });
  const last = ev.at(-1) as Extract<TrainEvent, { type: 'paused' }>;
  expect(last.type).toBe('paused');
  const P = last.step;
  expect([2, 3]).toContain(P);
  const losses = ev.filter((e) => e.type === 'step').map((e) => (e as Extract<TrainEvent, { type: 'step' }>).log.loss);

  await page.reload();
  await page.waitForSelector('body[data-ready="true"]', { state: 'attached' });
  await page.evaluate(() => {
    window.api = window.harness.startEngine() as unknown as Remote<EngineApi & EngineTestHooks>;
  });
  const pending = await page.evaluate(() => window.api.pendingCheckpoint());
  expect(pending).toMatchObject({ modelKey: 'demo:nf4', step: P, totalSteps: 4, datasetFile: 'baking-cups-to-grams.jsonl' });
  const ev2 = await page.evaluate(async () => {
    const out: TrainEvent[] = [];
    await window.api.resumeTraining(window.harness.proxy((e: TrainEvent) => void out.push(e)));
    return out;
  });
  const steps = ev2.filter((e) => e.type === 'step').map((e) => (e as Extract<TrainEvent, { type: 'step' }>).log);
  // The curve so far is replayed, then the run goes on from the checkpoint's step.
  expect(steps.map((l) => l.step)).toEqual([1, 2, 3, 4]);
  expect(steps.slice(0, P).map((l) => l.loss)).toEqual(losses);
  // A finished run ends with 'done', then goes into the adapter library ('saved').
  expect(ev2.slice(-2).map((e) => e.type)).toEqual(['done', 'saved']);
  expect(ev2.at(-2)).toEqual({ type: 'done', step: 4 });
  const csv = await page.evaluate(() => window.api.metricsCsv());
  expect(csv.trim().split('\n')).toHaveLength(5);
});

test('a destroyed GPU device mid-training resumes from the last checkpoint on a new device', async ({ page }) => {
  test.setTimeout(600_000);
  await open(page);
  await loadDemo(page);
  await prepare(page);
  const ev = await page.evaluate(async (opts) => {
    const out: TrainEvent[] = [];
    await window.api.train(opts, window.harness.proxy((e: TrainEvent) => {
      out.push(e);
      // After checkpoint 2 is saved, the device dies during step 3 (it takes seconds on SwiftShader).
      if (e.type === 'checkpoint' && e.step === 2 && !out.some((x) => x.type === 'device-lost')) void window.api.simulateDeviceLoss();
    }));
    return out;
  }, TRAIN);
  expect(ev.find((e) => e.type === 'device-lost')).toEqual({ type: 'device-lost', resumedFromStep: 2 });
  expect(ev.slice(-2).map((e) => e.type)).toEqual(['done', 'saved']);
  expect(ev.at(-2)).toEqual({ type: 'done', step: 3 });
  // The recovered run still chats with its adapter.
  const text = await page.evaluate(() => window.api.generate('Flour', { adapter: true, chat: false, maxNewTokens: 2, temperature: 0, topK: 0, topP: 1, seed: 0 }, window.harness.proxy(() => {})));
  expect(typeof text).toBe('string');
});

test('a full disk while caching gives the quota message and leaves no partial model', async ({ page }) => {
  test.setTimeout(300_000);
  await open(page);
  const r = await page.evaluate(async () => {
    const h = window.harness;
    const engine = h.pageEngine(h.quotaStore('/shard/layer.1'));
    const err = await engine.loadModel({ kind: 'demo' }, 'nf4', () => {}).catch((e) => e);
    const keys = await h.idbStore('webtune-e2e-quota').keys();
    return { name: err?.name, code: err?.code, message: err?.message, hint: err?.hint, keys, cached: await engine.listCachedModels() };
  });
  expect(r.code).toBe('storage-quota');
  expect(r.message).toMatch(/Not enough browser storage to save the quantized model/);
  expect(r.hint).toMatch(/Free disk space or delete cached models/);
  expect(r.keys).toEqual([]);
  expect(r.cached).toEqual([]);
});

test('a corrupt cached shard is refused by name and the entry is dropped', async ({ page }) => {
  test.setTimeout(300_000);
  await open(page);
  await loadDemo(page);
  const r = await page.evaluate(async () => {
    const store = window.harness.workerStore();
    const key = 'model/demo:nf4/shard/layer.0';
    const bytes = (await store.get<Uint8Array>(key))!.slice();
    bytes[123] ^= 0x5a;
    await store.set(key, bytes);
    const err = await window.api.loadModel({ kind: 'cached', key: 'demo:nf4' }, 'nf4', window.harness.proxy(() => {})).catch((e) => e);
    return { name: err?.name, message: err?.message, details: err?.details, cached: await window.api.listCachedModels() };
  });
  expect(r.name).toBe('ModelFileError');
  expect(r.message).toMatch(/shard layer\.0 does not match its SHA-256 checksum/);
  expect(r.details).toMatchObject({ reason: 'cache-corrupt', shard: 'layer.0' });
  expect(r.cached).toEqual([]);
});
