// The run record: built from a real prepared dataset (demo tokenizer, sample file), hashed by
// streaming, parsed back, and refused with the field named when it is not a record.
import { describe, expect, test } from 'vitest';
import { createHash } from 'node:crypto';
import { openAsBlob } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AdapterFileError } from '../errors.ts';
import { prepareDataset } from '../data/pipeline.ts';
import { openModelFolder } from '../io/model-folder.ts';
import { DEFAULT_LORA } from '../model/lora.ts';
import { DEFAULT_TRAIN } from '../train/config.ts';
import { directorySources } from '../node/fs-source.ts';
import { loadTokenizerFromDir } from '../node/data-command.ts';
import { fileDigest, runRecordFile } from '../node/run-record.ts';
import { RUN_RECORD_FILE, baseIdentity, buildRunRecord, parseRunRecord } from './run-record.ts';

const demo = fileURLToPath(new URL('../../public/models/demo', import.meta.url));
const sample = fileURLToPath(new URL('../../public/samples/baking-cups-to-grams.jsonl', import.meta.url));

describe('run record', () => {
  test('fileDigest streams the SHA-256 of a file (FIPS 180-2 "abc" vector) and its size', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'webtune-rr-'));
    try {
      await writeFile(join(dir, 'abc'), 'abc');
      expect(await fileDigest(join(dir, 'abc'))).toEqual({ bytes: 3, sha256: 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad' });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('runRecordFile holds every setting, the dataset identity and the loss history', async () => {
    const tok = await loadTokenizerFromDir(demo);
    const data = await prepareDataset({ name: 'baking-cups-to-grams.jsonl', data: await openAsBlob(sample) }, tok, { maxLength: 48, validation: 2, shuffle: false, skipBadRows: true });
    const folder = await openModelFolder(await directorySources(demo));
    const train = { ...DEFAULT_TRAIN, lr: 1e-3, maxSteps: 3, schedule: 'cosine' as const, warmupSteps: 1, seed: 7 };
    const lora = { ...DEFAULT_LORA, rank: 4, targets: ['q_proj', 'k_proj', 'down_proj'] as const } as typeof DEFAULT_LORA;
    const history = [
      { step: 1, epoch: 0, loss: 3.5, lr: 1e-3, grad_norm: 2, tokens: 90, tokens_per_s: 10 },
      { step: 2, epoch: 0, loss: 3.25, lr: 5e-4, grad_norm: 1.5, tokens: 88, tokens_per_s: 11, val_loss: 3.4 },
      { step: 3, epoch: 1, loss: 3.0, lr: 0, grad_norm: 1, tokens: 80, tokens_per_s: 12 },
    ];
    const options = { model: demo, data: sample, out: 'x', rank: '4', 'max-steps': '3', checkpointing: true, help: undefined };
    const files = await runRecordFile({ modelDir: demo, folder, dataFile: sample, data, lora, train, seqLen: 48, valSplit: 2, quant: 'nf4', options, totalSteps: 3, history });
    const r = parseRunRecord(JSON.parse(files[RUN_RECORD_FILE]));
    const bytes = await readFile(sample);
    expect(r.dataset).toMatchObject({
      file: 'baking-cups-to-grams.jsonl', bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex'),
      format: 'jsonl', shape: data.shape, template: data.template, trainExamples: data.train.length, validationExamples: 2,
    });
    expect(r.base).toMatchObject({ folder: demo, architecture: 'llama', quant: 'nf4', doubleQuant: false });
    expect(r.settings).toEqual({
      lora: { r: 4, alpha: 32, dropout: 0.05, rslora: false, targets: ['q_proj', 'k_proj', 'down_proj'] },
      train: { lr: 1e-3, epochs: 3, maxSteps: 3, batch: 2, gradAccum: 4, schedule: 'cosine', warmupSteps: 1, weightDecay: 0, maxGradNorm: 1, seed: 7, shuffle: true },
      seqLen: 48, packing: false, completionOnlyLoss: true, assistantOnlyLoss: true, valSplit: 2, checkpointing: true, initAdapter: null,
    });
    expect(r.options).toEqual({ model: demo, data: sample, out: 'x', rank: '4', 'max-steps': '3', checkpointing: true });
    expect(r.history).toEqual(history.map(({ tokens_per_s: _t, ...h }) => h));
    expect(r.final).toEqual({ step: 3, loss: 3.0, valLoss: 3.4 });
    expect(r.totalSteps).toBe(3);
  });

  test('a run with no steps has null final losses', () => {
    const r = buildRunRecord({
      base: { id: null, revision: null, folder: null, architecture: 'qwen2', dtype: null, quant: 'none', doubleQuant: false },
      dataset: { file: 'd.csv', bytes: 1, sha256: '0', format: 'csv', shape: 'text', template: 'raw', columns: {}, rowsRead: 1, skippedRows: 0, trainExamples: 1, validationExamples: 0 },
      lora: DEFAULT_LORA, train: DEFAULT_TRAIN, seqLen: 8, completionOnlyLoss: true, assistantOnlyLoss: true, valSplit: 0,
      checkpointing: false, options: {}, totalSteps: 0, history: [], created: new Date(0),
    });
    expect(r.final).toEqual({ step: 0, loss: null, valLoss: null });
    expect(r.created).toBe('1970-01-01T00:00:00.000Z');
    expect(r.settings.train.maxSteps).toBeNull();
  });

  test('baseIdentity reads the hub cache path, else a repo-like _name_or_path', () => {
    const sha = 'a'.repeat(40);
    expect(baseIdentity(`/home/u/.cache/huggingface/hub/models--HuggingFaceTB--SmolLM2-135M/snapshots/${sha}`, {}))
      .toEqual({ id: 'HuggingFaceTB/SmolLM2-135M', revision: sha });
    expect(baseIdentity('/models/x', { _name_or_path: 'Qwen/Qwen2.5-0.5B' })).toEqual({ id: 'Qwen/Qwen2.5-0.5B', revision: null });
    expect(baseIdentity('/models/x', { _name_or_path: '/tmp/local/folder' })).toEqual({ id: null, revision: null });
  });

  test('parseRunRecord names the bad field', () => {
    expect(() => parseRunRecord({ format: 'other' })).toThrow(AdapterFileError);
    expect(() => parseRunRecord({ format: 'webtune-run', version: 2 })).toThrow(/version 2/);
    try {
      parseRunRecord({ format: 'webtune-run', version: 1, settings: { lora: { r: 'x' }, train: {} } });
      expect.unreachable();
    } catch (e) {
      expect((e as AdapterFileError).details.field).toBe('settings.lora.r');
    }
  });
});
