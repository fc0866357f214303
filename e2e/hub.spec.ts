import { expect, test, type Page, type Request } from 'playwright/test';
import { ModelCache, memoryStore } from '../src/io/cache.ts';
import { startHubServer, type HubServer } from '../src/testing/hub-server.ts';
import { findStored, idbRecords, type IdbRecord } from './storage-probe.ts';

// Downloads from the Hub in the site (the production build), against a local stand-in for the Hub
// on 127.0.0.1 (src/testing/hub-server.ts: resolve URLs, a redirect for the weights, Range, ETag,
// CORS, a gated repository) that serves the demo model and injects faults. The page is pointed at it
// through the ?test-hooks handle, with a 1.5 s stall timeout instead of 10 s so a stall costs little.
//
// Issue 12, items 2 and 6: a stall shows "stalled, retrying…"; Cancel stops every request and keeps
// nothing in IndexedDB; a complete download is cached whole. The access token goes to the Hub only,
// and is written nowhere (IndexedDB, localStorage, sessionStorage, Cache Storage) unless "remember"
// is ticked.
const ROOT = 'public/models/demo/';
const REPO = 'webtune/demo';
const GATED = 'webtune/gated';
const TOKEN = 'hf_e2eNeverStoreMe7Qx3';
const STALL_MS = 1500;

let hub: HubServer;
test.beforeAll(async () => {
  hub = await startHubServer({ root: ROOT, repo: REPO, gatedRepo: GATED, token: TOKEN });
});
test.afterAll(() => hub?.close());
test.beforeEach(() => hub.reset());

async function open(page: Page): Promise<void> {
  await page.goto('/?test-hooks');
  await expect(page.locator('main[data-state="ready"]')).toBeVisible();
  await page.evaluate(([url, ms]) => (globalThis as unknown as { __webtuneHooks: { useHub(u: string, s: number): Promise<void> } }).__webtuneHooks.useHub(url, ms), [hub.url, STALL_MS] as const);
  await page.getByRole('radio', { name: 'Hugging Face' }).check();
}

async function download(page: Page, repo: string, token = ''): Promise<void> {
  await page.getByLabel('Model id').fill(repo);
  if (token) await page.getByLabel(/Access token/).fill(token);
  await page.getByRole('button', { name: 'Download and quantize' }).click();
}

/** The model cache as the page left it, checked in Node with the site's own reader. */
async function cacheOf(records: IdbRecord[]): Promise<{ keys: string[]; cache: ModelCache }> {
  const store = memoryStore();
  const model = records.filter((r) => r.key.startsWith('model/'));
  for (const r of model) store.data.set(r.key, r.base64 !== undefined ? new Uint8Array(Buffer.from(r.base64, 'base64')) : JSON.parse(r.json!));
  return { keys: model.map((r) => r.key), cache: new ModelCache(store) };
}

test('a stall shows "stalled, retrying…"; Cancel stops every request and keeps nothing; a clean download is cached whole', async ({ page }) => {
  await open(page);
  // Every request for the weights answers its headers and then nothing.
  hub.faults.push({ file: 'model.safetensors', kind: 'stall', afterBytes: 0, times: 1000 });
  let stalls = 0;
  const retryHeld = new Promise<void>((resolve) => hub.on('stall', () => ++stalls === 2 && resolve()));
  await download(page, REPO);
  await expect(page.getByTestId('load-retry')).toHaveText('model.safetensors: stalled, retrying…');
  // Cancel while the retry's request is held open by the server: it must be aborted, not waited out.
  await retryHeld;
  expect(hub.open).toBe(1);
  await page.getByTestId('cancel-load').click();
  await expect(page.getByTestId('model')).toHaveAttribute('data-state', 'cancelled');
  await expect(page.getByTestId('load-cancelled')).toBeVisible();
  // Every request the page made is over: none is held open, and each stalled one was aborted.
  await expect.poll(() => hub.open).toBe(0);
  const stalled = hub.requests.filter((r) => r.fault === 'stall');
  expect(stalled.length).toBe(2); // the first try and its retry, both aborted
  expect(stalled.every((r) => r.aborted)).toBe(true);
  const seen = hub.requests.length;
  const { keys } = await cacheOf(await idbRecords(page));
  expect(keys).toEqual([]);
  expect(hub.requests.length).toBe(seen); // nothing was started after the cancel

  // The same model without faults: downloaded, quantized and cached whole.
  hub.faults.length = 0;
  await page.getByRole('button', { name: 'Download and quantize' }).click();
  await expect(page.getByTestId('model')).toHaveAttribute('data-state', 'ready');
  await expect(page.getByRole('radio', { name: 'Cached (1)' })).toBeAttached();
  const { keys: after, cache } = await cacheOf(await idbRecords(page));
  const m = await cache.get(`hub:${REPO}@main:nf4#f16`);
  expect(m?.complete).toBe(true);
  for (const s of m!.shards) expect((await cache.readShard(m!, s)).length).toBe(s.bytes);
  expect(after.sort()).toEqual([`model/hub:${REPO}@main:nf4#f16/manifest`, ...m!.shards.map((s) => `model/hub:${REPO}@main:nf4#f16/shard/${s.id}`)].sort());
});

test('the access token goes to the Hub only and is stored nowhere unless "remember" is ticked', async ({ page, context }) => {
  // Every request of the page, its worker and its service worker, with the headers actually sent.
  const sent: Promise<{ url: string; auth: string | undefined }>[] = [];
  const watch = (r: Request) => void sent.push(r.allHeaders().then((h) => ({ url: r.url(), auth: h.authorization })));
  context.on('request', watch);
  await open(page);
  await expect(page.getByLabel(/Remember the token/)).not.toBeChecked();
  await download(page, GATED, TOKEN);
  await expect(page.getByTestId('model')).toHaveAttribute('data-state', 'ready');

  const requests = await Promise.all(sent);
  const hubHost = new URL(hub.url).host;
  const withToken = requests.filter((r) => r.auth?.includes(TOKEN) || r.url.includes(TOKEN));
  // The interception saw the worker's downloads (each file of the gated repository, with the token)…
  expect(withToken.filter((r) => new URL(r.url).pathname.startsWith(`/${GATED}/resolve/`)).length).toBeGreaterThanOrEqual(4);
  // …and the token went nowhere but the Hub.
  expect(withToken.map((r) => new URL(r.url).host).filter((h) => h !== hubHost)).toEqual([]);
  expect(requests.some((r) => new URL(r.url).host !== hubHost)).toBe(true); // the site's own requests were seen too
  // The Hub saw it on the gated files only as "Bearer <token>".
  expect(hub.requests.filter((r) => r.auth !== null).every((r) => r.auth === `Bearer ${TOKEN}`)).toBe(true);

  // Not written anywhere: the cached model, checkpoints, web storage, the service worker's cache.
  const stored = await findStored(page, TOKEN);
  expect(stored.slice(0, -1)).toEqual([]);
  expect(stored.at(-1)).toMatch(/read [1-9]\d* IndexedDB databases, \d+ web storage items, [1-9]\d* caches/);
  await page.reload();
  await expect(page.locator('main[data-state="ready"]')).toBeVisible();
  await page.getByRole('radio', { name: 'Hugging Face' }).check();
  await expect(page.getByLabel(/Access token/)).toHaveValue('');

  // Ticked, it is remembered on this device (and only then), and unticking forgets it.
  await page.getByLabel(/Access token/).fill(TOKEN);
  await page.getByLabel(/Remember the token/).check();
  expect((await findStored(page, TOKEN)).slice(0, -1)).toEqual(['localStorage webtune.hf-token']);
  await page.reload();
  await expect(page.locator('main[data-state="ready"]')).toBeVisible();
  await page.getByRole('radio', { name: 'Hugging Face' }).check();
  await expect(page.getByLabel(/Access token/)).toHaveValue(TOKEN);
  await expect(page.getByLabel(/Remember the token/)).toBeChecked();
  await page.getByLabel(/Remember the token/).uncheck();
  expect((await findStored(page, TOKEN)).slice(0, -1)).toEqual([]);
  context.off('request', watch);
});

test('the Hugging Face tab suggests the small models people fine-tune, with the memory each needs and whether it fits', async ({ page }) => {
  await open(page);
  const table = page.getByTestId('suggested-models');
  await expect(table.locator('tr')).toHaveCount(5);
  const ids = await table.locator('tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-model')));
  expect(ids).toEqual(['google/gemma-3-270m', 'google/gemma-3-1b-it', 'Qwen/Qwen3-0.6B', 'Qwen/Qwen3-1.7B', 'microsoft/Phi-3.5-mini-instruct']);
  // The families this engine runs are planned (about N GB, fits or not); any other says why not.
  for (const id of ['Qwen/Qwen3-0.6B', 'Qwen/Qwen3-1.7B', 'microsoft/Phi-3.5-mini-instruct']) {
    const row = table.locator(`tr[data-model="${id}"]`);
    await expect(row).toContainText(/about \d/);
    await expect(row.getByTestId('fit')).toHaveAttribute('data-fits', /^(true|false)$/);
  }
  await expect(table.locator('tr[data-model="Qwen/Qwen3-0.6B"]').getByTestId('fit')).toHaveText('fits');
  await page.getByRole('button', { name: 'Use microsoft/Phi-3.5-mini-instruct' }).click();
  await expect(page.getByLabel('Model id')).toHaveValue('microsoft/Phi-3.5-mini-instruct');
});
