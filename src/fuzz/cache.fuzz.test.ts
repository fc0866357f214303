// Fuzzing the IndexedDB model cache's manifest (src/io/cache.ts). What IndexedDB hands back is
// whatever an older version, another tab or a damaged profile left there, so the manifest and the
// shards are read as untrusted: manifests with fields removed or of the wrong type, shards that are
// missing, short or altered. Listing never fails and lists only well-formed complete models; get()
// gives a well-formed manifest, null, or a ModelFileError naming the manifest (a damaged one: the
// entry is dropped); a shard read gives the bytes whose SHA-256 the manifest holds, or a
// ModelFileError naming the shard (and the entry is dropped). The weight form fields (storage,
// doubleQuant) are optional, since entries written before them hold the f32 form; a manifest sealed
// with a bad value in one is refused with the field named.
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { ModelFileError } from '../errors.ts';
import { ModelCache, manifestForm, manifestProblem, memoryStore, sealOf, sha256Hex, type ModelManifest, type WeightForm } from '../io/cache.ts';
import { fuzz, nastyString, refusedOr } from './harness.ts';

const KEY = 'hub:org/model@main:nf4';
const manifestKey = `model/${KEY}/manifest`;
const shardKey = (id: string) => `model/${KEY}/shard/${id}`;

/** A complete model written through the cache's own writer: 1-3 shards of random bytes. */
async function writeModel(shards: Uint8Array[], form: WeightForm = { storage: 'f16', doubleQuant: true }): Promise<{ cache: ModelCache; store: ReturnType<typeof memoryStore>; manifest: ModelManifest }> {
  const store = memoryStore();
  const cache = new ModelCache(store);
  const w = await cache.begin({ key: KEY, name: 'org/model', source: 'hub', revision: 'main', quant: 'nf4', ...form, config: { model_type: 'llama' }, files: { 'tokenizer.json': '{}' } });
  for (const [i, data] of shards.entries()) {
    const half = data.length >> 1;
    await w.addShard(`layer.${i}`, [{ name: `layers.${i}.a`, offset: 0, bytes: half }, { name: `layers.${i}.b`, offset: 4, bytes: data.length - half }], data);
  }
  return { cache, store, manifest: await w.commit() };
}

const oddValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }),
  fc.constantFrom<unknown>(undefined, null, NaN, -1, 1.5, 2 ** 53, '', 'x', [], {}, true, new Uint8Array(3), new ArrayBuffer(2)),
);
const manifestFields = ['version', 'key', 'name', 'source', 'revision', 'quant', 'storage', 'doubleQuant', 'config', 'files', 'shards', 'totalBytes', 'savedAt', 'complete'];
const shardFields = ['id', 'bytes', 'sha256', 'pieces'];
const pieceFields = ['name', 'offset', 'bytes'];

/** An edit of the stored manifest: a top-level field, a shard's field or a piece's field set to an
 *  odd value (undefined removes it). */
const manifestEdit = fc.oneof(
  fc.tuple(fc.constant('top' as const), fc.constantFrom(...manifestFields), oddValue),
  fc.tuple(fc.constant('shard' as const), fc.constantFrom(...shardFields), oddValue),
  fc.tuple(fc.constant('piece' as const), fc.constantFrom(...pieceFields), oddValue),
);
/** An edit of a stored shard: removed, replaced by another type, cut, or one byte changed. */
const shardEdit = fc.oneof(
  fc.record({ kind: fc.constant('delete' as const) }),
  fc.record({ kind: fc.constant('value' as const), value: oddValue }),
  fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.nat(7) }),
);

function checkManifest(m: ModelManifest): void {
  expect(m.complete).toBe(true);
  expect(m.key).toBe(KEY);
  let total = 0;
  for (const s of m.shards) {
    expect(typeof s.id).toBe('string');
    expect(s.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(s.pieces.reduce((n, p) => n + p.bytes, 0)).toBe(s.bytes);
    for (const p of s.pieces) expect(typeof p.name === 'string' && Number.isSafeInteger(p.offset) && p.offset >= 0).toBe(true);
    total += s.bytes;
  }
  expect(m.totalBytes).toBe(total);
  expect(typeof m.config === 'object' && m.config !== null && !Array.isArray(m.config)).toBe(true);
  expect(Object.values(m.files).every((t) => typeof t === 'string')).toBe(true);
  const form = manifestForm(m);
  expect(['f16', 'f32']).toContain(form.storage);
  expect(typeof form.doubleQuant).toBe('boolean');
}

fuzz('IndexedDB manifest and shards as an older version or a damaged profile leaves them', fc.tuple(
  fc.array(fc.uint8Array({ minLength: 0, maxLength: 64 }), { minLength: 1, maxLength: 3 }),
  fc.array(manifestEdit, { maxLength: 3 }),
  fc.array(fc.tuple(fc.nat(2), shardEdit), { maxLength: 2 }),
  fc.option(oddValue, { nil: undefined, freq: 8 }),
), async ([shards, edits, shardEdits, wholeManifest]) => {
  const { cache, store } = await writeModel(shards);
  const stored = store.data.get(manifestKey) as Record<string, unknown>;
  const m: Record<string, unknown> = structuredClone(stored);
  for (const [where, field, value] of edits) {
    const target = where === 'top' ? m
      : where === 'shard' ? (Array.isArray(m.shards) ? (m.shards[0] as Record<string, unknown>) : null)
        : Array.isArray(m.shards) && Array.isArray((m.shards[0] as { pieces?: unknown })?.pieces) ? ((m.shards[0] as { pieces: Record<string, unknown>[] }).pieces[0]) : null;
    if (target && typeof target === 'object') {
      if (value === undefined) delete target[field];
      else target[field] = structuredClone(value);
    }
  }
  store.data.set(manifestKey, wholeManifest !== undefined ? structuredClone(wholeManifest) : m);
  for (const [i, e] of shardEdits) {
    const k = shardKey(`layer.${i}`);
    const v = store.data.get(k);
    if (e.kind === 'delete') store.data.delete(k);
    else if (e.kind === 'value') store.data.set(k, structuredClone(e.value)); // a copy: constants are shared between cases
    else if (v instanceof Uint8Array && e.kind === 'cut') store.data.set(k, v.slice(0, e.at % (v.length + 1)));
    else if (v instanceof Uint8Array && e.kind === 'flip' && v.length > 0) (v as Uint8Array)[e.at % v.length] ^= 1 << e.bit;
  }

  for (const listed of await cache.list()) checkManifest(listed);
  const got = await refusedOr(manifestKey, () => cache.get(KEY));
  if (got) {
    checkManifest(got);
    for (const s of got.shards) {
      const bytes = await refusedOr(shardKey(s.id), () => cache.readShard(got, s));
      if (!bytes) {
        expect(await cache.get(KEY)).toBeNull(); // a corrupt entry is dropped, not read again
        break;
      }
      expect(await sha256Hex(bytes)).toBe(s.sha256);
    }
  }
  await cache.collectGarbage();
});

// A value sealed as this version seals: what a writer with a bug (or another version) could leave.
// The seal holds, so only the field checks stand between it and the loader.
fuzz('a sealed manifest with any value in a form field: its form, or a typed error naming the field', fc.tuple(
  fc.constantFrom('storage', 'doubleQuant'), oddValue, fc.constantFrom('nf4', 'none'),
), async ([field, value, quant]) => {
  const { cache, store, manifest } = await writeModel([Uint8Array.of(1, 2, 3, 4)], { storage: 'f32', doubleQuant: false });
  const m: Record<string, unknown> = { ...structuredClone(manifest), quant };
  if (value === undefined) delete m[field];
  else m[field] = structuredClone(value);
  m.seal = await sealOf(m);
  store.data.set(manifestKey, m);
  const got = await refusedOr(manifestKey, () => cache.get(KEY));
  const problem = manifestProblem(m, KEY);
  if (got) {
    expect(problem).toBeUndefined();
    checkManifest(got);
    expect(manifestForm(got)[field]).toEqual(value ?? manifestForm({})[field]);
    expect(got.doubleQuant === true && got.quant !== 'nf4').toBe(false);
  } else {
    expect(problem).toBe(field);
    expect(await cache.get(KEY)).toBeNull(); // dropped
  }
});

fuzz('IndexedDB keys of any shape do not trip listing or garbage collection', fc.array(fc.tuple(fc.oneof(nastyString, nastyString.map((s) => `model/${s}`), nastyString.map((s) => `model/${s}/manifest`), nastyString.map((s) => `model/${s}/shard/x`)), oddValue), { maxLength: 6 }), async (entries) => {
  const store = memoryStore();
  for (const [k, v] of entries) store.data.set(k, structuredClone(v));
  const cache = new ModelCache(store);
  await cache.list();
  await cache.collectGarbage();
});

// Failures the fuzzer found, kept as named cases.
describe('IndexedDB manifest fuzz regressions', () => {
  test('a complete manifest with a malformed piece is not a cached model, and get() drops it (seed -1290281266, path 3)', async () => {
    // get() returned it as it was; the loader then indexed into a piece without a name.
    const { cache, store, manifest } = await writeModel([new Uint8Array(0)]);
    delete (manifest.shards[0].pieces[0] as Partial<(typeof manifest.shards)[0]['pieces'][0]>).name;
    store.data.set(manifestKey, manifest);
    expect(await cache.list()).toEqual([]);
    await expect(cache.get(KEY)).rejects.toThrow(/manifest does not match its checksum/);
    expect([...store.data.keys()]).toEqual([]);
  });

  test('a sealed manifest with a bad form value is refused naming the field, and dropped', async () => {
    for (const [field, value] of [['storage', 'f8'], ['doubleQuant', 'yes'], ['storage', null]] as const) {
      const { cache, store, manifest } = await writeModel([Uint8Array.of(7)]);
      const m = { ...manifest, [field]: value } as Record<string, unknown>;
      m.seal = await sealOf(m);
      store.data.set(manifestKey, m);
      expect(await cache.list()).toEqual([]);
      const e = await cache.get(KEY).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(ModelFileError);
      expect((e as ModelFileError).details).toMatchObject({ field, reason: 'cache-corrupt', file: manifestKey });
      expect((e as ModelFileError).message).toContain(`its field "${field}"`);
      expect([...store.data.keys()]).toEqual([]);
    }
  });

  test('an entry written before forms (no form fields) is a complete manifest of the f32 form', async () => {
    const { cache, store, manifest } = await writeModel([Uint8Array.of(7)]);
    const { storage: _s, doubleQuant: _d, ...old } = manifest;
    (old as Record<string, unknown>).seal = await sealOf(old as Record<string, unknown>);
    store.data.set(manifestKey, old);
    const got = (await cache.get(KEY))!;
    expect(manifestForm(got)).toEqual({ storage: 'f32', doubleQuant: false });
    expect(await cache.list()).toHaveLength(1);
  });

  test('a shard stored as something other than bytes is refused by name, not hashed', async () => {
    // A one-character string has the length of a one-byte shard; crypto.subtle.digest throws a
    // TypeError on it.
    const { cache, store, manifest } = await writeModel([Uint8Array.of(7)]);
    store.data.set(shardKey('layer.0'), 'x');
    const e = await cache.readShard(manifest, manifest.shards[0]).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ModelFileError);
    expect((e as ModelFileError).message).toMatch(/shard layer\.0 is not bytes/);
  });
});
