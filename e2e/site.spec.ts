import { readFileSync } from 'node:fs';
import { expect, test, type Page } from 'playwright/test';
import { Pace, untilDone } from './pace.ts';
import { SAMPLE, downloads, drop, loadDemo, open, setMaxNewTokens, setSmallRun, training, useSample } from './flow.ts';

// The site, end to end, in Chromium with WebGPU on SwiftShader: issue 5's "What must be shown".
// Every wait is on an explicit signal (data-state / data-step attributes the panels set), never a
// sleep. Training options are tiny (sequence 48, batch 2, no accumulation, lr 1e-2, all targets), yet
// the demo model's 32,000-token logits make a step take seconds on SwiftShader, and several times
// that on a busy machine. Training steps are most of the tier's time, so each test runs the fewest
// that still show what it checks: 12 for the loss to fall clearly across a reload, 8 for a device
// loss between checkpoints. So the long waits (training steps, streamed answers) follow the page's
// progress with budgets from the pace measured on the run itself (pace.ts), each extending the test
// timeout by its own budget; GUARD_MS bounds the rest (page loads, the dataset, exports).
const GUARD_MS = 10 * 60_000;

const SHOTS = 'docs/screenshots';

/** The main flow's run: at lr 1e-2 the mean loss of steps 8-12 is about 0.3 nats below that of
 *  steps 1-5, twice the fall the test asks for (see below). */
const STEPS = 12;

test.use({ viewport: { width: 1280, height: 800 } });

async function stepOf(page: Page): Promise<number> {
  return Number(await page.getByTestId('training').getAttribute('data-step'));
}

/** Whether the page would ask before being unloaded (the handler prevents a cancellable beforeunload). */
async function guardsUnload(page: Page): Promise<boolean> {
  return page.evaluate(() => {
    const e = new Event('beforeunload', { cancelable: true });
    window.dispatchEvent(e);
    return e.defaultPrevented;
  });
}

/** Sends a message and waits for both answers, for as long as text keeps streaming in at `pace`. */
async function chat(page: Page, pace: Pace, text: string): Promise<{ base: string; tuned: string }> {
  const panel = page.getByTestId('chat');
  const turns = Number(await panel.getAttribute('data-turns'));
  await page.getByTestId('chat-input').fill(text);
  await page.getByTestId('chat-input').press('Enter'); // keyboard path: Enter sends
  await expect(panel).toHaveAttribute('data-turns', String(turns + 1));
  const last = page.getByTestId('turns').locator('.turn').last();
  await untilDone('the chat answer', pace, async () => {
    const [state, streamed] = await Promise.all([panel.getAttribute('data-state'), last.locator('.answer p').allTextContents()]);
    const failed = state === 'failed' ? ((await page.getByTestId('chat-error').textContent()) ?? 'failed') : undefined;
    return { value: streamed.join('').length, done: state === 'idle', failed };
  });
  const side = async (id: string) => ((await last.getByTestId(id).count()) ? ((await last.getByTestId(id).locator('p').textContent()) ?? '') : '');
  return { base: await side('answer-base'), tuned: await side('answer-tuned') };
}

/** The safetensors header: 8-byte little-endian length, then JSON. */
function safetensorsHeader(b: Buffer): Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }> {
  const n = Number(b.readBigUInt64LE(0));
  const h = JSON.parse(b.subarray(8, 8 + n).toString('utf8'));
  delete h.__metadata__;
  return h;
}

function csvRows(csv: string): Record<string, number>[] {
  const [head, ...lines] = csv.trim().split('\n');
  const keys = head.split(',');
  return lines.map((l) => Object.fromEntries(l.split(',').map((v, i) => [keys[i], v === '' ? NaN : Number(v)])));
}

test('demo model, sample dataset, training, reload and resume from the cache, chat, export and import', async ({ page, context }) => {
  test.setTimeout(GUARD_MS);
  const pace = new Pace('training');
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  const t0 = Date.now();
  const lap = (what: string) => console.log(`site: ${what} at ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  await open(page);

  // 1. Demo model, dataset with its preview and statistics.
  await loadDemo(page);
  await expect(page.getByTestId('model-info')).toHaveAttribute('data-from-cache', 'false');
  await useSample(page);
  await expect(page.getByTestId('data-shape')).toContainText('seed');
  await expect(page.getByTestId('data-template')).toHaveText('seed');
  await expect(page.getByTestId('preview').first().locator('mark').first()).toBeVisible(); // trained tokens marked
  // Exactly the text the model sees, spaces included (Llama 2's SentencePiece pieces once lost
  // theirs here), with the trained run being the response.
  const preview = page.getByTestId('preview-text').first();
  // Truncated at 48 tokens: 30 of the prompt, 18 of the answer (what `webtune data --seq-len 48` prints).
  expect(await preview.textContent()).toBe(
    '<s> ### Instruction:\nHow much does 1/4 cup of all-purpose flour weigh in grams?\n### Response:\n1/4 cup of all-purpose flour weighs about 30 g.',
  );
  expect(await preview.locator('mark').allTextContents()).toEqual(['1/4 cup of all-purpose flour weighs about 30 g.']);
  await setSmallRun(page, STEPS, 3);
  await page.screenshot({ path: `${SHOTS}/model-and-dataset.png` });

  lap('model and dataset ready');
  // Train, then pause after the first checkpoints.
  expect(await guardsUnload(page)).toBe(false);
  await page.getByTestId('start').click();
  await expect(page.getByTestId('training')).toHaveAttribute('data-state', 'running');
  expect(await guardsUnload(page)).toBe(true); // leaving now would lose the steps since the last checkpoint
  // Past the first five steps, so the first step after the reload is compared with their mean below.
  await untilDone('training to step 6', pace, training(page, (_, step) => step >= 6));
  await page.getByTestId('pause').click();
  await untilDone('pausing', pace, training(page, (state) => state === 'paused'), { going: true });
  const pausedAt = await stepOf(page);
  lap(`paused at step ${pausedAt} (${pace})`);
  expect(await guardsUnload(page)).toBe(false); // the checkpoint at pause is written: a reload resumes
  await expect(page.getByTestId('training')).toHaveAttribute('data-checkpoint', String(pausedAt));
  await page.getByTestId('training').scrollIntoViewIfNeeded();
  await page.screenshot({ path: `${SHOTS}/training.png` });

  // 2. Reload: the resume offer, the model from IndexedDB with no weight requests, the run goes on.
  const weightRequests: string[] = [];
  context.on('request', (r) => {
    if (/\/models\/|\.safetensors/.test(r.url())) weightRequests.push(r.url());
  });
  await page.reload();
  await expect(page.locator('main[data-state="ready"]')).toBeVisible();
  await expect(page.getByTestId('resume-offer')).toContainText(`step ${pausedAt} of ${STEPS}`);
  await page.getByTestId('resume-pending').click();
  await expect(page.getByTestId('model')).toHaveAttribute('data-state', 'ready');
  await expect(page.getByTestId('model-info')).toHaveAttribute('data-from-cache', 'true');
  await expect(page.getByTestId('training')).toHaveAttribute('data-state', /running|done/);
  // The run comes back with the sequence length and template its data was prepared with.
  await expect(page.getByTestId('seq-len')).toHaveValue('48');
  await expect(page.getByTestId('format-trained')).toHaveText('As in training (seed)');
  await untilDone('the resumed run', pace, training(page, (state) => state === 'done'));
  expect(await stepOf(page)).toBe(STEPS);
  expect(weightRequests).toEqual([]);
  lap(`resumed run done (${pace})`);

  // The metrics cover the whole run, before and after the reload, and the loss fell.
  const metrics = await downloads(page, 1, () => page.getByTestId('metrics-csv').click());
  const rows = csvRows(metrics.get('metrics.csv')!.toString('utf8'));
  expect(rows.map((r) => r.step)).toEqual(Array.from({ length: STEPS }, (_, i) => i + 1));
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const first = mean(rows.slice(0, 5).map((r) => r.loss)), last = mean(rows.slice(-5).map((r) => r.loss));
  // The demo model starts at ln(32000) = 10.37 and loses about 0.1 nat a step at first (`webtune
  // train` at seq-len 48, batch 2, lr 1e-2 logged 10.35, 10.28, 10.13); a fall of 0.15 nats between
  // the first and last five-step means is well above the step-to-step noise (about 0.05).
  expect(last, `loss by step: ${rows.map((r) => r.loss.toFixed(2)).join(' ')}`).toBeLessThan(first - 0.15);
  // No jump back after the reload: the first resumed step continues the curve.
  expect(rows[pausedAt].loss).toBeLessThan(first);
  lap(`loss by step: ${rows.map((r) => r.loss.toFixed(2)).join(' ')}`);

  // Chat: the fine-tuned answer differs from the base model's. Six tokens each: a token costs
  // seconds on SwiftShader under load, and the greedy answers part at the first token (the base
  // model's are newlines, the tuned one's digits).
  await setMaxNewTokens(page, 6);
  const decoding = new Pace('decoding', pace);
  const a = await chat(page, decoding, 'How much does 1 cup of all-purpose flour weigh in grams?');
  expect(a.tuned.length).toBeGreaterThan(0);
  expect(a.base).not.toEqual(a.tuned);
  await page.getByTestId('chat').scrollIntoViewIfNeeded();
  await page.screenshot({ path: `${SHOTS}/chat.png` });

  lap(`chat answered (${decoding}): base ${JSON.stringify(a.base)}, tuned ${JSON.stringify(a.tuned)}`);
  // 3. Export: PEFT files with the right keys, shapes and config; import gives back the same weights.
  const files = await downloads(page, 2, () => page.getByTestId('export').click());
  const config = JSON.parse(files.get('adapter_config.json')!.toString('utf8'));
  expect(config).toMatchObject({ r: 8, lora_alpha: 32, peft_type: 'LORA', task_type: 'CAUSAL_LM' });
  expect([...config.target_modules].sort()).toEqual(['down_proj', 'gate_proj', 'k_proj', 'o_proj', 'q_proj', 'up_proj', 'v_proj']);
  const weights = files.get('adapter_model.safetensors')!;
  const header = safetensorsHeader(weights);
  const keys = Object.keys(header);
  expect(keys).toHaveLength(2 * 7 * 2); // 2 layers x 7 modules x (A, B)
  expect(header['base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight']).toMatchObject({ dtype: 'F32', shape: [8, 64] });
  expect(header['base_model.model.model.layers.1.mlp.down_proj.lora_B.weight']).toMatchObject({ dtype: 'F32', shape: [64, 8] });
  expect(header['base_model.model.model.layers.1.mlp.down_proj.lora_A.weight'].shape).toEqual([8, 128]);

  await page.getByTestId('adapter-drop-input').setInputFiles([
    { name: 'adapter_config.json', mimeType: 'application/json', buffer: files.get('adapter_config.json')! },
    { name: 'adapter_model.safetensors', mimeType: 'application/octet-stream', buffer: weights },
  ]);
  await expect(page.getByTestId('adapter-panel')).toHaveAttribute('data-state', 'imported');
  await expect(page.getByTestId('imported')).toContainText('rank 8');
  const again = await downloads(page, 2, () => page.getByTestId('export').click());
  expect(again.get('adapter_model.safetensors')!.equals(weights)).toBe(true);
  // The imported adapter alone (the base model's answer is already known): it answers exactly as the
  // trained one did.
  await page.getByTestId('chat-compare').selectOption('none');
  const b = await chat(page, decoding, 'How much does 1 cup of all-purpose flour weigh in grams?');
  expect(b.base).toBe('');
  expect(b.tuned).toEqual(a.tuned);
  lap(`imported adapter answered (${decoding})`);

  // The layout holds in a narrow window.
  await page.setViewportSize({ width: 420, height: 800 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  expect(overflow).toBeLessThanOrEqual(0);
  await page.screenshot({ path: `${SHOTS}/narrow.png` });
  expect(errors).toEqual([]);
});

test('packing short examples: the option packs them into fewer rows, and the estimate counts steps over the rows', async ({ page }) => {
  await open(page);
  await loadDemo(page);
  await useSample(page, 256); // 53- to 79-token examples: three or so fit a row of 256
  await page.getByTestId('epochs').fill('1');
  await page.getByTestId('batch').fill('2');
  await page.getByTestId('grad-accum').fill('1');
  const estimate = page.getByTestId('estimate');
  await expect(estimate).toContainText('optimizer steps');
  await expect(estimate).not.toContainText('packed rows');
  const examples = Number(/^(\d+) for training/.exec((await page.getByTestId('data-examples').textContent()) ?? '')![1]);
  // The estimate follows the form a moment later (a round trip to the worker): wait for its text.
  await expect(estimate).toContainText(`${Math.ceil(examples / 2)} optimizer steps;`);
  await page.getByTestId('packing').check();
  const packed = async () => {
    const m = /(\d+) optimizer steps over (\d+) packed rows \((\d+) examples\)/.exec((await estimate.textContent()) ?? '');
    return m ? { steps: Number(m[1]), rows: Number(m[2]), examples: Number(m[3]) } : undefined;
  };
  // Until the new estimate arrives the rows are still the examples; then fewer than half of them.
  await expect.poll(async () => (await packed())?.rows ?? examples).toBeLessThan(examples / 2);
  const p = (await packed())!;
  expect(p.examples).toBe(examples);
  expect(p.steps).toBe(Math.ceil(p.rows / 2));
});

test('a bad dataset shows its line-numbered error, bad rows can be skipped, and pickles are refused', async ({ page }) => {
  await open(page);
  await loadDemo(page);
  const good = readFileSync(SAMPLE, 'utf8').split('\n').filter(Boolean);
  const bad = [good[0], good[1], '{"instruction": "broken", ', good[3], '{"instruction": "no response"}', good[5]].join('\n');
  await drop(page, 'data-drop', [{ name: 'bad.jsonl', text: bad }]);
  await expect(page.getByTestId('dataset')).toHaveAttribute('data-state', 'failed');
  const err = page.getByTestId('dataset-error');
  await expect(err).toContainText('line 3');
  await expect(err).toContainText('line 5');
  await expect(err).not.toContainText(/\s+at\s.+\.ts:\d+/); // no stack trace
  await page.screenshot({ path: `${SHOTS}/bad-dataset.png` });
  await page.getByTestId('skip-bad-rows').click();
  await expect(page.getByTestId('dataset')).toHaveAttribute('data-state', 'ready');
  await expect(page.getByTestId('data-examples')).toHaveText('3 for training, 1 for validation') // 4 good rows, 5% held out (at least one);
  await expect(page.getByTestId('skipped-rows')).toContainText('2 rows skipped');

  // A pickle dropped as a dataset: refused with the reason; the prepared dataset stays.
  await drop(page, 'data-drop', [{ name: 'pytorch_model.bin', bytes: [0x80, 0x02, 0x7d, 0x71, 0x00] }]);
  await expect(page.getByTestId('dataset-error')).toContainText('arbitrary code');
  await expect(page.getByTestId('dataset-summary')).toBeVisible();

  // A model folder holding only pickled weights: the engine refuses it and says why.
  await page.getByRole('radio', { name: 'Local folder' }).check();
  const config = readFileSync('public/models/demo/config.json', 'utf8');
  await drop(page, 'model-drop', [{ name: 'config.json', text: config }, { name: 'pytorch_model.bin', bytes: [0x80, 0x02, 0x7d, 0x71, 0x00] }]);
  await expect(page.getByTestId('model')).toHaveAttribute('data-state', 'failed');
  await expect(page.getByTestId('model-error')).toContainText('pytorch_model.bin');
  await expect(page.getByTestId('model-error')).toContainText('arbitrary code');
});

test('a GPU device lost mid-training resumes from the last checkpoint', async ({ page }) => {
  test.setTimeout(GUARD_MS);
  const pace = new Pace('training');
  await open(page, '/?test-hooks'); // the production build exposes simulateDeviceLoss only when asked
  await loadDemo(page);
  await useSample(page);
  await setSmallRun(page, 8, 2);
  await page.getByTestId('start').click();
  const panel = page.getByTestId('training');
  const step = training(page, () => false);
  await untilDone('training to the first checkpoint', pace, async () => ({
    ...(await step()),
    // Checkpoint 2 or 4: at least four steps remain for the loss to land in.
    done: /^(2|4)$/.test((await panel.getAttribute('data-checkpoint')) ?? ''),
  }));
  const checkpoint = Number(await panel.getAttribute('data-checkpoint'));
  await page.evaluate(() => (globalThis as unknown as { __webtuneHooks: { simulateDeviceLoss(): Promise<void> } }).__webtuneHooks.simulateDeviceLoss());
  // Recovery is a start again (a new device, the model from the cache, pipelines compiled anew),
  // reported once the run is rebuilt: one wait within the start budget.
  await untilDone('recovery from the lost device', pace, async () => ({
    ...(await step()),
    value: 0,
    done: (await panel.getAttribute('data-device-losses')) === '1',
  }));
  const notice = (await page.getByTestId('train-notice').textContent()) ?? '';
  const resumed = Number(/step (\d+)/.exec(notice)?.[1]);
  expect(resumed).toBeGreaterThanOrEqual(checkpoint); // at most one checkpoint interval lost
  await untilDone('the recovered run', pace, training(page, (state) => state === 'done'));
  expect(await stepOf(page)).toBe(8);
  await expect(page.getByTestId('train-error')).toHaveCount(0);
});

test('with the network cut after the first visit, the app opens, loads the cached model and chats', async ({ page, context }) => {
  test.setTimeout(GUARD_MS);
  await open(page);
  await loadDemo(page);
  // The service worker controls the page and has the shell (the start page, its scripts and
  // styles: the worker caches them in the background, so this waits until they are there); the
  // model is in IndexedDB.
  await page.waitForFunction(() => navigator.serviceWorker.controller !== null);
  await page.waitForFunction(async () => {
    const shell = [location.href, ...Array.from(document.querySelectorAll<HTMLScriptElement | HTMLLinkElement>('script[src], link[rel="stylesheet"]'), (e) => ('src' in e ? e.src : e.href))];
    const hits = await Promise.all(shell.map((url) => caches.match(url, { ignoreVary: true })));
    return hits.every(Boolean);
  }, undefined, { polling: 250 });
  await context.setOffline(true);
  await page.reload();
  await expect(page.locator('main[data-state="ready"]')).toBeVisible();
  await expect(page.getByTestId('offline')).toBeVisible();
  await page.getByRole('radio', { name: /Cached/ }).check();
  await page.getByTestId('cached-models').getByRole('button', { name: /^Load/ }).first().click();
  await expect(page.getByTestId('model')).toHaveAttribute('data-state', 'ready');
  await expect(page.getByTestId('model-info')).toHaveAttribute('data-from-cache', 'true');
  await setMaxNewTokens(page, 4); // enough to see the cached model answer offline
  const a = await chat(page, new Pace('decoding'), 'Hello');
  expect(a.base.length).toBeGreaterThan(0);
  await context.setOffline(false);
});
