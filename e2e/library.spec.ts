import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { expect, test } from 'playwright/test';
import { Pace, untilDone } from './pace.ts';
import { SAMPLE, ask, downloads, loadDemo, open, safetensorsHeader, setMaxNewTokens, setSmallRun, training, useSample } from './flow.ts';

// The adapter library (issue 11): a finished run is saved with its run record, listed, renamed,
// exported, imported back as a second entry, picked in the chat without reloading the base model,
// compared with the base, and deleted. A short run of its own (this spec's page has its own
// IndexedDB), at a learning rate high enough that a few steps change the greedy answer.
const GUARD_MS = 10 * 60_000;
const STEPS = 3;

test.use({ viewport: { width: 1280, height: 900 } });

test('the adapter library: saved with its record, renamed, exported, imported, swapped in chat, deleted', async ({ page, context }) => {
  test.setTimeout(GUARD_MS);
  const t0 = Date.now();
  const lap = (what: string) => console.log(`library: ${what} at ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  const pace = new Pace('training');
  await open(page);
  await loadDemo(page);
  await useSample(page);
  await setSmallRun(page, STEPS, 100, '0.05');
  await page.getByTestId('start').click();
  await untilDone('the run', pace, training(page, (state) => state === 'done'));
  lap(`trained ${STEPS} steps (${pace})`);

  // 1. Saved automatically, with its record: dataset and its SHA-256, steps, final loss, size.
  const library = page.getByTestId('library');
  await expect(library).toHaveAttribute('data-count', '1');
  const trainedId = (await library.getByTestId('library-entry').first().getAttribute('data-id'))!;
  const row = library.locator(`[data-testid="library-entry"][data-id="${trainedId}"]`);
  const finalLoss = (await page.getByTestId('loss').textContent())!;
  const sha = createHash('sha256').update(readFileSync(SAMPLE)).digest('hex');
  await expect(row.getByTestId('entry-name')).toHaveText(new RegExp(`^baking-cups-to-grams · ${STEPS} steps, loss \\d+\\.\\d{3}$`));
  await expect(row.getByTestId('entry-dataset')).toContainText('baking-cups-to-grams.jsonl');
  await expect(row.getByTestId('entry-dataset')).toContainText(sha.slice(0, 8));
  await expect(row.getByTestId('entry-steps')).toHaveText(String(STEPS));
  await expect(row.getByTestId('entry-loss')).toContainText(finalLoss);
  await expect(row.getByTestId('entry-size')).toHaveText(/\d+(\.\d+)? (KiB|MiB)/);
  await expect(row).toHaveClass(/current/);

  // 2. Renamed.
  await row.getByTestId('rename').click();
  await row.getByTestId('rename-input').fill('  cups v1 ');
  await row.getByTestId('rename-save').click();
  await expect(row.getByTestId('entry-name')).toHaveText('cups v1');

  // 3. Exported: PEFT files plus the run record, and GGUF-LoRA.
  const peft = await downloads(page, 3, () => row.getByTestId('export-peft').click());
  expect([...peft.keys()].sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors', 'webtune-run.json']);
  expect(Object.keys(safetensorsHeader(peft.get('adapter_model.safetensors')!))).toHaveLength(2 * 7 * 2); // 2 layers x 7 modules x (A, B)
  const record = JSON.parse(peft.get('webtune-run.json')!.toString('utf8'));
  expect(record).toMatchObject({ format: 'webtune-run', totalSteps: STEPS, base: { architecture: 'llama', quant: 'nf4' } });
  expect(record.dataset).toMatchObject({ file: 'baking-cups-to-grams.jsonl', sha256: sha, bytes: readFileSync(SAMPLE).length });
  expect(record.settings.train).toMatchObject({ lr: 0.05, batch: 2, maxSteps: STEPS });
  expect(record.history.map((h: { step: number }) => h.step)).toEqual(Array.from({ length: STEPS }, (_, i) => i + 1));
  expect(record.final.loss.toFixed(4)).toBe(finalLoss);
  const gguf = await downloads(page, 1, () => row.getByTestId('export-gguf').click());
  expect(gguf.get('cups-v1.gguf')!.subarray(0, 4).toString('latin1')).toBe('GGUF');
  const trl = (await downloads(page, 1, () => row.getByTestId('export-trl').click())).get('cups-v1-trl.zip')!;
  expect(trl.readUInt32LE(0)).toBe(0x04034b50); // a ZIP's first local file header
  const listed = trl.toString('latin1');
  for (const f of ['train.py', 'data/train.jsonl', 'data/validation.jsonl', 'requirements.txt', 'accelerate/ddp.yaml', 'webtune-run.json']) expect(listed, f).toContain(f);
  expect(listed).toContain('SFTTrainer');

  // 4. Imported back: a second entry, the current one now, named from its record.
  await page.getByTestId('adapter-drop-input').setInputFiles([...peft].map(([name, buffer]) => ({ name, mimeType: 'application/octet-stream', buffer })));
  await expect(page.getByTestId('adapter-panel')).toHaveAttribute('data-state', 'imported');
  await expect(library).toHaveAttribute('data-count', '2');
  const importedRow = library.locator('[data-testid="library-entry"].current');
  const importedId = (await importedRow.getAttribute('data-id'))!;
  expect(importedId).not.toBe(trainedId);
  lap('listed, renamed, exported and imported');

  // 5. Chat: the renamed library adapter (opened from IndexedDB next to the loaded base) against
  // the base; then the imported copy alone. No model load between them, no weight requested.
  const loads = await page.getByTestId('chat').getAttribute('data-model-loads');
  const weightRequests: string[] = [];
  context.on('request', (r) => {
    if (/\/models\/|\.safetensors/.test(r.url())) weightRequests.push(r.url());
  });
  await setMaxNewTokens(page, 6);
  const decoding = new Pace('decoding', pace);
  await page.getByTestId('chat-adapter').selectOption(trainedId);
  await page.getByTestId('chat-compare').selectOption('base');
  const q = 'How much does 1 cup of all-purpose flour weigh in grams?';
  const first = await ask(page, decoding, q);
  expect([...first.keys()]).toEqual(['base', trainedId]);
  await expect(page.getByTestId('turns').locator('.turn').last().getByTestId('answer-tuned').locator('.who')).toHaveText('cups v1');
  expect(first.get(trainedId)!.length).toBeGreaterThan(0);
  expect(first.get(trainedId)).not.toEqual(first.get('base'));
  await page.getByTestId('chat-adapter').selectOption('current');
  await page.getByTestId('chat-compare').selectOption('none');
  const second = await ask(page, decoding, q);
  expect([...second.keys()]).toEqual(['current']);
  expect(second.get('current')).toEqual(first.get(trainedId)); // the same weights, swapped back in
  await page.getByTestId('chat-adapter').selectOption('base');
  const third = await ask(page, decoding, q);
  expect(third.get('base')).toEqual(first.get('base'));
  await expect(page.getByTestId('chat')).toHaveAttribute('data-model-loads', loads!);
  await expect(page.getByTestId('model')).toHaveAttribute('data-state', 'ready');
  expect(weightRequests).toEqual([]);
  lap(`chat swapped adapters (${decoding})`);
  // Long adapter names in the chat's pickers and the library's table do not widen a narrow window.
  await page.setViewportSize({ width: 420, height: 900 });
  const wide = await page.evaluate(() => {
    const w = document.documentElement.clientWidth;
    const out = [...document.querySelectorAll('main *')].filter((e) => e.getBoundingClientRect().right > w + 0.5)
      .map((e) => `${e.tagName.toLowerCase()}.${[...e.classList].join('.')}[${e.getAttribute('data-testid') ?? ''}] ${Math.round(e.getBoundingClientRect().right)}`);
    return { overflow: document.documentElement.scrollWidth - w, out: out.slice(0, 12) };
  });
  expect(wide.overflow, `wider than the window: ${wide.out.join('; ')}`).toBeLessThanOrEqual(0);
  await page.setViewportSize({ width: 1280, height: 900 });

  // 6. The merged model, streamed into a folder through the File System Access API. Playwright cannot
  // answer the native folder picker, so it hands back the origin-private file system's root, which
  // is the same kind of directory handle.
  await page.evaluate(() => {
    (window as unknown as { showDirectoryPicker: () => Promise<FileSystemDirectoryHandle> }).showDirectoryPicker = () => navigator.storage.getDirectory();
  });
  await row.getByTestId('export-merged').click();
  await expect(page.getByTestId('merged-status')).toHaveAttribute('data-state', 'done');
  const merged = await page.evaluate(async () => {
    const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle('cups-v1-merged');
    const sizes: Record<string, number> = {};
    for await (const [name, h] of (dir as unknown as { entries(): AsyncIterable<[string, FileSystemFileHandle]> }).entries()) sizes[name] = (await h.getFile()).size;
    const st = await (await dir.getFileHandle('model.safetensors')).getFile();
    const n = Number(new DataView(await st.slice(0, 8).arrayBuffer()).getBigUint64(0, true));
    const header = JSON.parse(await st.slice(8, 8 + n).text());
    const tensor = async (name: string) => Array.from(new Uint8Array(await st.slice(8 + n + header[name].data_offsets[0], 8 + n + header[name].data_offsets[1]).arrayBuffer()));
    return { sizes, header, norm: await tensor('model.layers.0.input_layernorm.weight'), q: await tensor('model.layers.0.self_attn.q_proj.weight') };
  });
  expect(Object.keys(merged.sizes).sort()).toEqual(['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
  for (const f of ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json']) expect(merged.sizes[f], f).toBe(readFileSync(`public/models/demo/${f}`).length);
  const demo = readFileSync('public/models/demo/model.safetensors');
  const demoHeader = safetensorsHeader(demo);
  const demoTensor = (name: string) => {
    const start = 8 + Number(demo.readBigUInt64LE(0));
    return [...demo.subarray(start + demoHeader[name].data_offsets[0], start + demoHeader[name].data_offsets[1])];
  };
  delete merged.header.__metadata__;
  expect(Object.keys(merged.header).sort()).toEqual(Object.keys(demoHeader).sort());
  for (const [k, v] of Object.entries(demoHeader)) expect(merged.header[k], k).toMatchObject({ dtype: v.dtype, shape: v.shape });
  expect(merged.norm).toEqual(demoTensor('model.layers.0.input_layernorm.weight')); // not adapted: byte-identical
  expect(merged.q).not.toEqual(demoTensor('model.layers.0.self_attn.q_proj.weight')); // W + scaling·B·A
  lap('merged model written');

  // 7. Deleted: gone from the list and from the chat's choices.
  await row.getByTestId('delete').click();
  await row.getByTestId('delete-confirm').click();
  await expect(library).toHaveAttribute('data-count', '1');
  await expect(page.locator(`[data-testid="library-entry"][data-id="${trainedId}"]`)).toHaveCount(0);
  await expect(page.getByTestId('chat-adapter').locator(`option[value="${trainedId}"]`)).toHaveCount(0);
  expect(errors).toEqual([]);
  lap('deleted');
});
