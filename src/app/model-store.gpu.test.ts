// The model cache holds any weight form, through ModelStore's real path on a real device: the demo
// model loaded in the memory-saving form (f16 tables, double-quantized absmax) is cached under that
// form's key with the form in its manifest, and a second store loads it from the cache alone to
// the same logits, bit for bit. A load that asks for the f32 form does not use that entry; an f32
// entry written before forms were recorded (no form fields in its manifest) still loads, as f32.
import { afterAll, beforeAll, expect, test } from 'vitest';
import { fileURLToPath } from 'node:url';
import { Gpu } from '../gpu/runtime.ts';
import { memoryStore, sealOf, type ModelManifest } from '../io/cache.ts';
import type { ByteSource } from '../io/byte-source.ts';
import { directorySources } from '../node/fs-source.ts';
import type { Batch } from '../model/llama.ts';
import { ModelStore, type StoreSource } from './model-store.ts';

const demoDir = fileURLToPath(new URL('../../public/models/demo/', import.meta.url));

let gpu: Gpu;
beforeAll(async () => {
  gpu = await Gpu.create();
});
afterAll(() => gpu?.destroy());

/** The demo folder as a source whose reads are counted (a load from the cache reads none). */
async function demoFolder(reads: { n: number }): Promise<StoreSource> {
  const files: Record<string, ByteSource> = {};
  for (const [k, f] of await directorySources(demoDir)) files[k] = { name: f.name, size: f.size, read: (a: number, n: number) => (reads.n++, f.read(a, n)) };
  return { kind: 'folder', name: 'demo', files };
}

const T = 6;
const batch: Batch = {
  B: 1, T, ids: Uint32Array.from([1, 450, 1206, 310, 278, 4799]), positions: Uint32Array.from({ length: T }, (_, i) => i),
  targets: Int32Array.from({ length: T }, () => -100),
};

async function logits(store: ModelStore): Promise<Float32Array> {
  const run = await store.open({ batch: 1, seqLen: T, training: false });
  try {
    return await gpu.readF32(run.model.forwardLogits(batch), 0, T * store.base!.config.vocabSize);
  } finally {
    store.close(run);
  }
}

test('each weight form is cached under its own key and loads back from the cache alone to the same logits; an old f32 entry still loads', async () => {
  const kv = memoryStore();
  const host = { store: kv, createGpu: async () => gpu, maxPositions: 64 };

  // The memory-saving form, read from the folder and cached.
  const reads = { n: 0 };
  const a = new ModelStore(host);
  const info = await a.load(await demoFolder(reads), 'nf4', undefined, { storage: 'f16', doubleQuant: true });
  expect(info).toMatchObject({ key: 'folder:demo:nf4#f16+dq', form: { storage: 'f16', doubleQuant: true }, fromCache: false });
  expect(reads.n).toBeGreaterThan(0);
  expect(a.base!.plan.tablesF16).toBe(true);
  expect(a.base!.plan.opts.doubleQuant).toBe(true);
  const m = (await a.cache!.get(info.key))!;
  expect([m.storage, m.doubleQuant]).toEqual(['f16', true]);
  const wantLogits = await logits(a);

  // A second store (a reload) loads it without reading the folder, to the same logits.
  const again = { n: 0 };
  const b = new ModelStore(host);
  const info2 = await b.load(await demoFolder(again), 'nf4', undefined, { storage: 'f16', doubleQuant: true });
  expect(info2).toMatchObject({ key: info.key, form: { storage: 'f16', doubleQuant: true }, fromCache: true });
  expect(info2.origin).toBeUndefined(); // a folder cannot be read again from the cache's record
  expect(again.n).toBe(0);
  expect(b.base!.plan.tablesF16).toBe(true);
  expect(await logits(b)).toEqual(wantLogits);
  // The cached source alone (the site's Cached list) gives the same.
  await b.load({ kind: 'cached', key: info.key }, 'nf4');
  expect(b.base!.info.form).toEqual({ storage: 'f16', doubleQuant: true });
  expect(await logits(b)).toEqual(wantLogits);

  // The f32 form is not that entry: it is read from the folder and cached under its own key.
  const f32reads = { n: 0 };
  const f32 = await b.load(await demoFolder(f32reads), 'nf4', undefined, { storage: 'f32', doubleQuant: false });
  expect(f32).toMatchObject({ key: 'folder:demo:nf4', form: { storage: 'f32', doubleQuant: false }, fromCache: false });
  expect(f32reads.n).toBeGreaterThan(0);
  const f32Logits = await logits(b);
  const listed = await b.listCached();
  expect(listed.map((c) => [c.key, c.form]).sort((x, y) => String(x[0]).localeCompare(String(y[0])))).toEqual([
    ['folder:demo:nf4', { storage: 'f32', doubleQuant: false }],
    ['folder:demo:nf4#f16+dq', { storage: 'f16', doubleQuant: true }],
  ]);
  const bytes = Object.fromEntries(listed.map((c) => [c.key, c.bytes]));
  // The f16 embedding (32000 x 64) alone is 4 MB smaller.
  expect(bytes['folder:demo:nf4'] - bytes['folder:demo:nf4#f16+dq']).toBeGreaterThan(32000 * 64 * 2);

  // The f32 entry as the version before forms wrote it: no form fields, sealed as it was.
  const key = 'model/folder:demo:nf4/manifest';
  const { storage: _s, doubleQuant: _d, ...old } = kv.data.get(key) as ModelManifest;
  old.seal = await sealOf(old as Record<string, unknown>);
  kv.data.set(key, old);
  const c = new ModelStore(host);
  const oldInfo = await c.load({ kind: 'cached', key: 'folder:demo:nf4' }, 'nf4');
  expect(oldInfo).toMatchObject({ form: { storage: 'f32', doubleQuant: false }, fromCache: true });
  expect(c.base!.plan.tablesF16).toBe(false);
  expect(await logits(c)).toEqual(f32Logits);
  // Deleting one entry leaves the other.
  await c.deleteCached('folder:demo:nf4');
  expect((await c.listCached()).map((x) => x.key)).toEqual(['folder:demo:nf4#f16+dq']);
  for (const s of [a, b, c]) s.unload();
}, 600_000);
