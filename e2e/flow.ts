// Steps of the site's user path shared by the specs that drive the production build: open the page,
// load the demo model, drop the sample dataset, set a tiny run, follow training and chat by the
// data-state attributes the panels set, and collect downloads. Waits follow the page's progress
// (pace.ts), never a sleep.
import { readFileSync } from 'node:fs';
import { expect, type Download, type Page } from 'playwright/test';
import { Pace, untilDone, type Progress } from './pace.ts';

export const SAMPLE = 'public/samples/baking-cups-to-grams.jsonl';

export async function open(page: Page, path = '/'): Promise<void> {
  await page.goto(path);
  await expect(page.locator('main[data-state="ready"]')).toBeVisible();
}

export async function loadDemo(page: Page): Promise<void> {
  await page.getByTestId('load-demo').click();
  await expect(page.getByTestId('model')).toHaveAttribute('data-state', 'ready');
}

/** Drops files on a drop zone the way a user's drag does (a DataTransfer with File objects). */
export async function drop(page: Page, testid: string, files: { name: string; text?: string; bytes?: number[] }[]): Promise<void> {
  const dt = await page.evaluateHandle((fs) => {
    const t = new DataTransfer();
    for (const f of fs) t.items.add(new File([f.bytes ? new Uint8Array(f.bytes) : (f.text ?? '')], f.name));
    return t;
  }, files);
  await page.getByTestId(testid).dispatchEvent('drop', { dataTransfer: dt });
}

/** The sample dataset at `seqLen` tokens a row. 48 keeps every row's answer trained (at least 14 of
 *  its tokens after the seed-template prompt) while a step costs a quarter less than at 64: the
 *  demo model's 32,000-token logits, one row per token, are most of a step on SwiftShader. */
export async function useSample(page: Page, seqLen = 48): Promise<void> {
  await page.getByTestId('seq-len').fill(String(seqLen));
  await drop(page, 'data-drop', [{ name: 'baking-cups-to-grams.jsonl', text: readFileSync(SAMPLE, 'utf8') }]);
  await expect(page.getByTestId('dataset')).toHaveAttribute('data-state', 'ready');
}

export async function setSmallRun(page: Page, maxSteps: number, checkpointEvery: number, lr = '0.01'): Promise<void> {
  await page.getByTestId('all-targets').click();
  await page.getByTestId('lr').fill(lr);
  await page.getByTestId('epochs').fill('1');
  await page.getByTestId('max-steps').fill(String(maxSteps));
  await page.getByTestId('batch').fill('2');
  await page.getByTestId('grad-accum').fill('1');
  await page.getByTestId('checkpoint-every').fill(String(checkpointEvery));
  await expect(page.getByTestId('estimate')).toContainText(`${maxSteps} optimizer steps`);
}

/** Training progress: the step, done once `done` holds for the panel's state and step. */
export function training(page: Page, done: (state: string, step: number) => boolean): () => Promise<Progress> {
  const panel = page.getByTestId('training');
  return async () => {
    const [state, step] = await Promise.all([panel.getAttribute('data-state'), panel.getAttribute('data-step')]);
    const failed = state === 'failed' ? ((await page.getByTestId('train-error').textContent()) ?? 'failed') : undefined;
    return { value: Number(step), done: done(state ?? '', Number(step)), failed };
  };
}

export async function setMaxNewTokens(page: Page, n: number): Promise<void> {
  await page.getByTestId('sampling').evaluate((d) => ((d as HTMLDetailsElement).open = true));
  await page.getByTestId('max-new-tokens').fill(String(n));
}

/** Sends a message and waits for every answer, for as long as text keeps streaming in at `pace`.
 *  Returns the answers by their data-pick (base, current, or a library id). */
export async function ask(page: Page, pace: Pace, text: string): Promise<Map<string, string>> {
  const panel = page.getByTestId('chat');
  const turns = Number(await panel.getAttribute('data-turns'));
  await page.getByTestId('chat-input').fill(text);
  await page.getByTestId('chat-input').press('Enter');
  await expect(panel).toHaveAttribute('data-turns', String(turns + 1));
  const last = page.getByTestId('turns').locator('.turn').last();
  await untilDone('the chat answer', pace, async () => {
    const [state, streamed] = await Promise.all([panel.getAttribute('data-state'), last.locator('.answer p').allTextContents()]);
    const failed = state === 'failed' ? ((await page.getByTestId('chat-error').textContent()) ?? 'failed') : undefined;
    return { value: streamed.join('').length, done: state === 'idle', failed };
  });
  const out = new Map<string, string>();
  for (const a of await last.locator('.answer').all()) out.set((await a.getAttribute('data-pick'))!, (await a.locator('p').textContent()) ?? '');
  return out;
}

/** The downloads a click starts, by suggested file name, once `n` have arrived. An export that
 *  fails shows an error card instead of downloading: that ends the wait with its text. */
export async function downloads(page: Page, n: number, click: () => Promise<void>): Promise<Map<string, Buffer>> {
  const card = page.locator('[data-testid="adapter-error"], [data-testid="library-error"]').first();
  let settled = false;
  const failed = card.waitFor({ timeout: 0 }).then(
    async () => (settled ? undefined : Promise.reject(new Error(`the download failed: ${await card.textContent()}`))),
    () => undefined, // the page closed first
  );
  try {
    return await Promise.race([collect(page, n, click), failed.then(() => new Promise<never>(() => {}))]);
  } finally {
    settled = true;
  }
}

async function collect(page: Page, n: number, click: () => Promise<void>): Promise<Map<string, Buffer>> {
  const got: Download[] = [];
  const all = new Promise<void>((resolve) => {
    const on = (d: Download) => {
      got.push(d);
      if (got.length === n) {
        page.off('download', on);
        resolve();
      }
    };
    page.on('download', on);
  });
  await click();
  await all;
  const out = new Map<string, Buffer>();
  for (const d of got) out.set(d.suggestedFilename(), readFileSync((await d.path())!));
  return out;
}

/** The safetensors header: 8-byte little-endian length, then JSON. */
export function safetensorsHeader(b: Buffer): Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }> {
  const n = Number(b.readBigUInt64LE(0));
  const h = JSON.parse(b.subarray(8, 8 + n).toString('utf8'));
  delete h.__metadata__;
  return h;
}
