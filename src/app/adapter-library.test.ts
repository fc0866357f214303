// The adapter library over a Map-backed key-value store: entries per base model with their run
// records, newest first, renamed and deleted by id, files kept apart from the listing, and the
// write order that never leaves an entry without its files.
import { describe, expect, test } from 'vitest';
import { UsageError } from '../errors.ts';
import { memoryStore, type KeyValueStore } from '../io/cache.ts';
import { buildRunRecord, type RunRecord } from '../export/run-record.ts';
import { DEFAULT_LORA } from '../model/lora.ts';
import { DEFAULT_TRAIN } from '../train/config.ts';
import { AdapterLibrary, defaultName, type NewEntry } from './adapter-library.ts';

function record(loss: number): RunRecord {
  return buildRunRecord({
    base: { id: null, revision: null, folder: null, architecture: 'llama', dtype: 'float32', quant: 'nf4', doubleQuant: false },
    dataset: {
      file: 'cups.jsonl', bytes: 123, sha256: 'ab'.repeat(32), format: 'jsonl', shape: 'seed', template: 'seed', columns: {},
      rowsRead: 10, skippedRows: 0, trainExamples: 9, validationExamples: 1,
    },
    lora: DEFAULT_LORA, train: DEFAULT_TRAIN, seqLen: 64, completionOnlyLoss: true, assistantOnlyLoss: false, valSplit: 0.05,
    checkpointing: false, options: {}, totalSteps: 2,
    history: [{ step: 1, epoch: 0, loss: loss + 1, lr: 1e-3, grad_norm: 1, tokens: 64 }, { step: 2, epoch: 0, loss, lr: 1e-3, grad_norm: 1, tokens: 64, val_loss: loss + 0.5 }],
    created: new Date('2026-01-02T03:04:05Z'),
  });
}

function entry(modelKey: string, name: string, loss = 2): NewEntry {
  return {
    modelKey, name, origin: 'trained', rank: 8, targets: ['q_proj', 'v_proj'], record: record(loss),
    files: { 'adapter_config.json': new Uint8Array(10), 'adapter_model.safetensors': new Uint8Array(90) },
  };
}

function library(store: KeyValueStore = memoryStore()) {
  let t = 1000, n = 0;
  return new AdapterLibrary(store, { now: () => t++, id: () => `id${++n}` });
}

describe('adapter library', () => {
  test('lists the entries of one base model, newest first, with size and run record', async () => {
    const lib = library();
    await lib.add(entry('demo:nf4', 'first', 3));
    await lib.add(entry('hub:x/y@main:nf4', 'other model'));
    await lib.add(entry('demo:nf4', 'second', 1.5));
    const list = await lib.list('demo:nf4');
    expect(list.map((e) => e.name)).toEqual(['second', 'first']);
    expect(list[0]).toMatchObject({ id: 'id3', bytes: 100, rank: 8, origin: 'trained', targets: ['q_proj', 'v_proj'] });
    expect(list[0].record?.final).toEqual({ step: 2, loss: 1.5, valLoss: 2 });
    expect(list[0].record?.dataset).toMatchObject({ file: 'cups.jsonl', bytes: 123, sha256: 'ab'.repeat(32) });
    expect((await lib.list()).length).toBe(3);
  });

  test('renames (trimmed) and refuses an empty name, naming the field', async () => {
    const lib = library();
    const e = await lib.add(entry('m', 'old'));
    expect((await lib.rename(e.id, '  new   name ')).name).toBe('new name');
    expect((await lib.get(e.id)).name).toBe('new name');
    const err = await lib.rename(e.id, '   ').catch((x) => x);
    expect(err).toBeInstanceOf(UsageError);
    expect(err.details.field).toBe('name');
  });

  test('keeps the files under their own key and hands them back byte for byte', async () => {
    const store = memoryStore();
    const lib = library(store);
    const files = { 'adapter_config.json': new TextEncoder().encode('{"r":8}'), 'adapter_model.safetensors': Uint8Array.from([1, 2, 3]) };
    const e = await lib.add({ ...entry('m', 'a'), files });
    expect(await lib.files(e.id)).toEqual(files);
    // The listing reads only the small metadata keys.
    const meta = store.data.get(`adapter/${e.id}/meta`) as Record<string, unknown>;
    expect(meta).not.toHaveProperty('files');
  });

  test('delete removes both keys; an unknown id is a typed error', async () => {
    const store = memoryStore();
    const lib = library(store);
    const e = await lib.add(entry('m', 'a'));
    await lib.remove(e.id);
    expect(await lib.list()).toEqual([]);
    expect([...store.data.keys()]).toEqual([]);
    await expect(lib.remove(e.id)).rejects.toBeInstanceOf(UsageError);
    await expect(lib.files(e.id)).rejects.toThrow(/No adapter/);
  });

  test('a failed metadata write leaves nothing behind; orphan files are swept', async () => {
    const store = memoryStore();
    const failing: KeyValueStore = { ...store, set: async (k, v) => (k.endsWith('/meta') ? Promise.reject(new Error('quota')) : store.set(k, v)) };
    await expect(library(failing).add(entry('m', 'a'))).rejects.toThrow('quota');
    expect(store.data.size).toBe(0);
    await store.set('adapter/lost/files', {});
    await store.set('model/other', 1); // not the library's: untouched
    const lib = library(store);
    expect(await lib.collectGarbage()).toEqual(['lost']);
    expect([...store.data.keys()]).toEqual(['model/other']);
  });

  test('malformed metadata is left out of the list', async () => {
    const store = memoryStore();
    await store.set('adapter/bad/meta', { id: 'bad' });
    await store.set('adapter/x/meta', { id: 'not-x', modelKey: 'm', name: 'n', savedAt: 1, bytes: 1, targets: [] });
    expect(await library(store).list()).toEqual([]);
  });

  test('default names say the dataset, steps and loss, or that it was imported', () => {
    expect(defaultName(record(1.23456), new Date())).toBe('cups · 2 steps, loss 1.235');
    expect(defaultName(null, new Date('2026-05-06T07:08:09Z'))).toBe('Imported adapter 2026-05-06 07:08');
  });
});
