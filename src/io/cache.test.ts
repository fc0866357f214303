// The model cache's commit protocol and integrity checks, against an in-memory store.
import { describe, expect, test } from 'vitest';
import { ModelCache, memoryStore, sha256Hex, type KeyValueStore, type Locks } from './cache.ts';
import { StorageQuotaError } from '../errors.ts';
import { ModelFileError } from '../errors.ts';

const base = {
  key: 'hub:org/model@main:nf4', name: 'org/model', source: 'hub' as const, revision: 'main', quant: 'nf4' as const,
  config: { model_type: 'llama' }, files: { 'tokenizer.json': '{}', 'tokenizer_config.json': '{}' },
};
const bytes = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 255);

describe('ModelCache', () => {
  test('an entry counts as cached only after commit, with checksums and totals', async () => {
    const store = memoryStore();
    const cache = new ModelCache(store);
    const w = await cache.begin(base);
    await w.addShard('layer.0', [{ name: 'layers.0.q_proj.weight', offset: 0, bytes: 8 }, { name: 'layers.0.q_proj.absmax', offset: 0, bytes: 4 }], bytes(12, 1));
    expect(await cache.list()).toEqual([]);
    expect(await cache.get(base.key)).toBeNull();
    await w.addShard('globals.0', [{ name: 'embed', offset: 0, bytes: 16 }], bytes(16, 2));
    const m = await w.commit();
    expect(m.complete).toBe(true);
    expect(m.totalBytes).toBe(28);
    expect(m.shards.map((s) => s.id)).toEqual(['layer.0', 'globals.0']);
    expect(m.shards[0].sha256).toBe(await sha256Hex(bytes(12, 1)));
    expect((await cache.list()).map((x) => x.key)).toEqual([base.key]);
    expect(await cache.readShard(m, m.shards[1])).toEqual(bytes(16, 2));
  });

  test('a shard whose pieces do not add up is a bug, refused before writing', async () => {
    const cache = new ModelCache(memoryStore());
    const w = await cache.begin(base);
    await expect(w.addShard('x', [{ name: 'a', offset: 0, bytes: 5 }], bytes(4, 0))).rejects.toThrow(/pieces add up to 5/);
  });

  test('a flipped byte or a missing shard drops the entry and names the shard', async () => {
    const store = memoryStore();
    const cache = new ModelCache(store);
    const w = await cache.begin(base);
    await w.addShard('layer.0', [{ name: 'a', offset: 0, bytes: 32 }], bytes(32, 3));
    await w.addShard('layer.1', [{ name: 'b', offset: 0, bytes: 32 }], bytes(32, 4));
    const m = await w.commit();
    const key = `model/${base.key}/shard/layer.1`;
    const bad = (store.data.get(key) as Uint8Array).slice();
    bad[7] ^= 1;
    store.data.set(key, bad);
    const err = await cache.readShard(m, m.shards[1]).catch((e) => e);
    expect(err).toBeInstanceOf(ModelFileError);
    expect(err.message).toContain('shard layer.1 does not match its SHA-256 checksum');
    expect(err.details).toMatchObject({ shard: 'layer.1', reason: 'cache-corrupt', file: key });
    expect(store.data.size).toBe(0);

    const w2 = await cache.begin(base);
    await w2.addShard('layer.0', [{ name: 'a', offset: 0, bytes: 32 }], bytes(32, 3));
    const m2 = await w2.commit();
    store.data.delete(`model/${base.key}/shard/layer.0`);
    await expect(cache.readShard(m2, m2.shards[0])).rejects.toThrow(/shard layer\.0 is missing/);
    expect(await cache.get(base.key)).toBeNull();
  });

  test('QuotaExceededError on any write leaves nothing behind and becomes StorageQuotaError', async () => {
    for (let failAt = 0; failAt < 4; failAt++) {
      const mem = memoryStore();
      let writes = 0;
      const store: KeyValueStore = {
        ...mem,
        set: async (k, v) => {
          if (writes++ === failAt) throw new DOMException('quota', 'QuotaExceededError');
          return mem.set(k, v);
        },
      };
      const cache = new ModelCache(store);
      const err = await (async () => {
        const w = await cache.begin(base);
        await w.addShard('layer.0', [{ name: 'a', offset: 0, bytes: 8 }], bytes(8, 0));
        await w.addShard('layer.1', [{ name: 'b', offset: 0, bytes: 8 }], bytes(8, 1));
        await w.commit();
      })().catch((e) => e);
      expect(err, `write ${failAt}`).toBeInstanceOf(StorageQuotaError);
      expect(err.code).toBe('storage-quota');
      expect(err.message).toContain('org/model');
      expect(err.hint).toMatch(/delete cached models/);
      expect(mem.data.size, `write ${failAt}`).toBe(0);
    }
  });

  test('other storage errors propagate unchanged (after cleaning up)', async () => {
    const mem = memoryStore();
    const store: KeyValueStore = { ...mem, set: async (k, v) => (k.includes('/shard/') ? Promise.reject(new Error('disk on fire')) : mem.set(k, v)) };
    const w = await new ModelCache(store).begin(base);
    await expect(w.addShard('s', [{ name: 'a', offset: 0, bytes: 4 }], bytes(4, 0))).rejects.toThrow('disk on fire');
    expect(mem.data.size).toBe(0);
  });

  test('garbage collection drops half-written entries and keeps complete ones', async () => {
    const store = memoryStore();
    const cache = new ModelCache(store);
    const done = await cache.begin({ ...base, key: 'demo:nf4' });
    await done.addShard('layer.0', [{ name: 'a', offset: 0, bytes: 4 }], bytes(4, 0));
    await done.commit();
    const half = await cache.begin(base);
    await half.addShard('layer.0', [{ name: 'a', offset: 0, bytes: 4 }], bytes(4, 0));
    store.data.set('model/orphan:nf4/shard/layer.0', bytes(4, 0));
    expect((await cache.collectGarbage()).sort()).toEqual([base.key, 'orphan:nf4'].sort());
    expect([...store.data.keys()].sort()).toEqual(['model/demo:nf4/manifest', 'model/demo:nf4/shard/layer.0']);
  });

  test('with locks, garbage collection leaves an entry whose writer holds its lock and drops a dead writer\'s', async () => {
    // A stand-in for navigator.locks: exclusive locks by name, ifAvailable answered at once.
    const held = new Set<string>();
    const locks: Locks = {
      async request(name, opts, cb) {
        if (held.has(name)) {
          if (opts.ifAvailable) return cb(null);
          throw new Error('the test never waits for a lock');
        }
        held.add(name);
        try {
          return await cb({ name });
        } finally {
          held.delete(name);
        }
      },
    };
    const store = memoryStore();
    const cache = new ModelCache(store, locks);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const writing = cache.writing(base.key, async () => {
      const w = await cache.begin(base);
      await w.addShard('layer.0', [{ name: 'a', offset: 0, bytes: 4 }], bytes(4, 0));
      await gate; // a writer still at work
      await w.addShard('layer.1', [{ name: 'a', offset: 0, bytes: 4 }], bytes(4, 1));
      return w.commit();
    });
    // A writer that died (a closed tab): its entry is incomplete and nobody holds its lock.
    await (await cache.begin({ ...base, key: 'demo:nf4' })).addShard('layer.0', [{ name: 'a', offset: 0, bytes: 4 }], bytes(4, 0));
    while (!held.has(`webtune-cache:${base.key}`)) await Promise.resolve();
    expect(await cache.collectGarbage()).toEqual(['demo:nf4']);
    expect([...store.data.keys()].some((k) => k.startsWith(`model/${base.key}/shard/layer.0`))).toBe(true);
    release();
    await writing;
    expect(await cache.collectGarbage()).toEqual([]);
    expect((await cache.list()).map((m) => m.key)).toEqual([base.key]);
  });

  test('beginning an entry replaces an older one under the same key; delete removes all of it', async () => {
    const store = memoryStore();
    const cache = new ModelCache(store);
    const a = await cache.begin(base);
    await a.addShard('layer.0', [{ name: 'a', offset: 0, bytes: 4 }], bytes(4, 0));
    await a.addShard('layer.1', [{ name: 'a', offset: 0, bytes: 4 }], bytes(4, 0));
    await a.commit();
    const b = await cache.begin(base);
    await b.addShard('layer.0', [{ name: 'a', offset: 0, bytes: 4 }], bytes(4, 9));
    await b.commit();
    expect([...store.data.keys()].filter((k) => k.includes('/shard/'))).toEqual([`model/${base.key}/shard/layer.0`]);
    await cache.delete(base.key);
    expect(store.data.size).toBe(0);
  });
});
