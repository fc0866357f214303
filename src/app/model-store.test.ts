// Device-loss detection costs nothing on ordinary failures: no timer, no wait on `device.lost`
// (which never settles on a live device). A stand-in Gpu is enough: only its loss state is read.
import { afterEach, describe, expect, test, vi } from 'vitest';
import type { Gpu } from '../gpu/runtime.ts';
import { DatasetError, DeviceLostError, ModelFileError, ModelTooLargeError, UsageError } from '../errors.ts';
import { DEFAULT_OPTIONS } from './options.ts';
import { checkFit, fitSettings } from './fit.ts';
import { parseModelConfig } from '../model/config.ts';
import { readFileSync } from 'node:fs';
import { F32_FORM, ModelStore, cacheKey, formLabel, formOfKey, modelOfKey, type StoreSource, type WeightForm } from './model-store.ts';
import { ModelCache, memoryStore } from '../io/cache.ts';

function fakeGpu(onWorkDone: () => Promise<undefined>): Gpu {
  return { lostError: undefined, lost: new Promise(() => {}), device: { queue: { onSubmittedWorkDone: onWorkDone } } } as unknown as Gpu;
}

async function storeWith(g: Gpu): Promise<ModelStore> {
  const s = new ModelStore({ createGpu: async () => g });
  await s.device();
  return s;
}

afterEach(() => {
  vi.useRealTimers();
});

describe('ModelStore.isDeviceLoss', () => {
  test('an ordinary failure on a live device is answered at once, with no timer and no device call', async () => {
    vi.useFakeTimers(); // a timer-based wait would never fire: the answer must not need one
    const workDone = vi.fn(async () => undefined);
    const s = await storeWith(fakeGpu(workDone));
    expect(await s.isDeviceLoss(new UsageError('bad', 'fix it'))).toBe(false);
    expect(await s.isDeviceLoss(new DatasetError('bad row', 'fix it', { line: 3 }))).toBe(false);
    expect(workDone).not.toHaveBeenCalled();
    expect(vi.getTimerCount()).toBe(0);
  });

  test('a DeviceLostError, or any failure once the device is marked lost, is a loss', async () => {
    const g = fakeGpu(async () => undefined);
    const s = await storeWith(g);
    expect(await s.isDeviceLoss(new DeviceLostError('destroyed', 'gone'))).toBe(true);
    g.lostError = new DeviceLostError('unknown', 'driver reset');
    expect(await s.isDeviceLoss(new UsageError('bad', 'fix it'))).toBe(true);
    expect(s.lost).toBe(true);
  });

  test('an untyped failure takes one queue round trip, after which a lost device is marked', async () => {
    vi.useFakeTimers();
    const g = fakeGpu(async () => {
      // What WebGPU does on a lost device: `lost` settles (the runtime sets lostError) before any
      // other promise of that device.
      g.lostError = new DeviceLostError('destroyed', 'gone');
      return undefined;
    });
    const s = await storeWith(g);
    expect(await s.isDeviceLoss(new DOMException('Device is lost', 'AbortError'))).toBe(true);
    const live = await storeWith(fakeGpu(async () => undefined));
    expect(await live.isDeviceLoss(new TypeError('a bug'))).toBe(false);
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe('ModelStore downloads', () => {
  test('the hub address, stall timeout and cancel reach every request: a stall is reported, cancel aborts the held one', async () => {
    const { startHubServer } = await import('../testing/hub-server.ts');
    const hub = await startHubServer({ root: new URL('../../public/models/demo/', import.meta.url).pathname, repo: 'webtune/demo' });
    // A fake clock for the stall timer and the backoff: no request can stall because the machine is
    // slow (the clock moves only when the test moves it), and the held request stalls exactly when
    // the test moves the clock by the store's stall timeout, after the hub holds it.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const STALL_MS = 300;
    try {
      hub.faults.push({ file: 'model.safetensors', kind: 'stall', afterBytes: 0, times: 100 });
      const store = new ModelStore({ fetch: (u, i) => fetch(u, i), hubUrl: hub.url, stallTimeoutMs: STALL_MS, createGpu: async () => Promise.reject(new Error('no GPU needed')) });
      const held: (() => void)[] = [];
      const stall = (n: number) => new Promise<void>((resolve) => { held[n] = resolve; });
      const firstHeld = stall(0), secondHeld = stall(1);
      let stalls = 0;
      hub.on('stall', () => held[stalls++]?.());
      const events: string[] = [];
      let retried!: () => void;
      const retry = new Promise<void>((resolve) => { retried = resolve; });
      const loading = store.load({ kind: 'hub', id: 'webtune/demo' }, 'nf4', (e) => {
        if (e.phase !== 'retry') return;
        events.push(`${e.file} ${e.stalled}`);
        retried();
      }).catch((e: unknown) => e);
      await firstHeld;
      // One tick short of the timeout nothing happens; at the timeout the held request is aborted
      // as a stall and tried again after the first backoff (250 ms, hub.ts's default).
      vi.advanceTimersByTime(STALL_MS - 1);
      await new Promise((resolve) => setImmediate(resolve));
      expect(events).toEqual([]);
      expect(hub.requests.find((r) => r.fault === 'stall')!.aborted).toBe(false);
      vi.advanceTimersByTime(1);
      await retry;
      expect(events).toEqual(['model.safetensors true']);
      await hub.idle(); // the server saw the stalled request close before the retry is sent
      vi.advanceTimersByTime(250);
      await secondHeld;
      expect(hub.open).toBe(1);
      store.cancel();
      const err = await loading;
      expect(err).toBeInstanceOf(ModelFileError);
      expect((err as ModelFileError).details.reason).toBe('cancelled');
      expect(events).toEqual(['model.safetensors true']);
      await hub.idle();
      expect(hub.requests.filter((r) => r.fault === 'stall').map((r) => r.aborted)).toEqual([true, true]);
      expect(hub.requests.every((r) => r.path.startsWith('/webtune/demo/resolve/main/') || r.path.startsWith('/cdn/'))).toBe(true);
    } finally {
      vi.useRealTimers();
      await hub.close();
    }
  });
});

describe('ModelStore fit check', () => {
  const demo = new URL('../../public/models/demo/', import.meta.url).pathname;
  const limits = { maxBufferSize: 2 ** 28, maxStorageBufferBindingSize: 2 ** 27 };
  // Only the limits are read before the refusal; a GPU call beyond that would throw.
  const limitsOnly = { limits, lostError: undefined } as unknown as Gpu;

  test('a model that does not fit is refused after config.json: no other file is requested, and the error has the plan and the nearest settings', async () => {
    const { startHubServer } = await import('../testing/hub-server.ts');
    const hub = await startHubServer({ root: demo, repo: 'webtune/demo' });
    try {
      const store = new ModelStore({ fetch: (u, i) => fetch(u, i), hubUrl: hub.url, createGpu: async () => limitsOnly });
      const settings = fitSettings({ ...DEFAULT_OPTIONS, storage: 'f32', seqLen: 256, batch: 4 });
      const cfg = parseModelConfig(JSON.parse(readFileSync(demo + 'config.json', 'utf8')));
      // The site's context: the model is loaded in the run's form (its storage for the tables, its
      // double quantization), with the host's RoPE rows.
      const ctx = { dims: cfg, quant: 'nf4' as const, doubleQuantKnob: true, maxPositions: Math.min(cfg.maxPositionEmbeddings, 4096) };
      const asked = checkFit(ctx, settings, { budget: Infinity, limits });
      const withCk = checkFit(ctx, { ...settings, storage: 'f16', checkpointing: true }, { budget: Infinity, limits });
      const budget = withCk.peakBytes;
      expect(asked.peakBytes).toBeGreaterThan(budget);
      const events: string[] = [];
      const err = await store.load({ kind: 'hub', id: 'webtune/demo' }, 'nf4', (e) => void events.push(`${e.phase} ${'file' in e ? e.file : ''}`), { fit: { settings, budget } }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ModelTooLargeError);
      const e = err as ModelTooLargeError;
      expect(e.details.byCategory).toEqual(asked.byCategory);
      expect(e.details.budget).toBe(budget);
      const s = e.details.suggestion as { settings: typeof settings; peakBytes: number };
      expect(s.peakBytes).toBeLessThanOrEqual(budget);
      expect(checkFit(ctx, s.settings, { budget, limits }).fits).toBe(true);
      await hub.idle();
      expect(hub.requests.map((r) => r.file)).toEqual(['config.json']);
      expect(new Set(events)).toEqual(new Set(['download config.json']));
      expect(store.base).toBeUndefined();
    } finally {
      await hub.close();
    }
  });

  test('a local folder is refused before its weights are read', async () => {
    const { directorySources } = await import('../node/fs-source.ts');
    const src = await directorySources(demo);
    const read: [string, number][] = [];
    const files = Object.fromEntries(src.map(([k, f]) => [k, { name: f.name, size: f.size, read: (a: number, n: number) => (read.push([k, n]), f.read(a, n)) }]));
    const store = new ModelStore({ createGpu: async () => limitsOnly });
    const settings = fitSettings({ ...DEFAULT_OPTIONS, seqLen: 64, batch: 1 });
    const err = await store.load({ kind: 'folder', name: 'demo', files }, 'nf4', undefined, { fit: { settings, budget: 1024, positionsFollowRun: true } }).catch((x: unknown) => x);
    expect(err).toBeInstanceOf(ModelTooLargeError);
    expect((err as ModelTooLargeError).details.suggestion).toBeUndefined(); // 1 KiB holds no model
    // config.json, the tokenizer files and the safetensors header: never a tensor's bytes.
    const st = readFileSync(demo + 'model.safetensors');
    const header = 8 + Number(st.readBigUInt64LE(0));
    const weightBytes = read.filter(([f]) => f.endsWith('.safetensors')).reduce((a, [, n]) => a + n, 0);
    expect(weightBytes).toBeLessThanOrEqual(header);
    expect(store.base).toBeUndefined();
  });
});

describe('ModelStore cache forms', () => {
  const demo = new URL('../../public/models/demo/', import.meta.url).pathname;
  const config = JSON.parse(readFileSync(demo + 'config.json', 'utf8')) as Record<string, unknown>;
  const FORMS: WeightForm[] = [F32_FORM, { storage: 'f16', doubleQuant: false }, { storage: 'f32', doubleQuant: true }, { storage: 'f16', doubleQuant: true }];
  const noGpu = async (): Promise<Gpu> => Promise.reject(new Error('no GPU: the cache decides first'));

  /** A complete entry (no shards: nothing here reaches the GPU) of `key`, in `form`, or with no form
   *  fields at all as entries written before forms were recorded. */
  async function entry(store: ReturnType<typeof memoryStore>, key: string, form: WeightForm | 'old'): Promise<void> {
    const w = await new ModelCache(store).begin({
      key, name: 'demo', source: 'demo', revision: null, quant: 'nf4', ...(form === 'old' ? {} : form), config, files: { 'tokenizer.json': '{}' },
    });
    await w.commit();
  }

  test('the key names the form, and the f32 form keeps the key entries had before forms', () => {
    const sources: StoreSource[] = [{ kind: 'demo' }, { kind: 'hub', id: 'org/model', revision: 'v1' }, { kind: 'folder', name: 'my#model', files: {} }];
    expect(cacheKey({ kind: 'demo' }, 'nf4')).toBe('demo:nf4');
    expect(cacheKey({ kind: 'demo' }, 'nf4', F32_FORM)).toBe('demo:nf4');
    expect(cacheKey({ kind: 'hub', id: 'org/model' }, 'nf4', { storage: 'f16', doubleQuant: true })).toBe('hub:org/model@main:nf4#f16+dq');
    const keys = new Set<string>();
    for (const src of sources) {
      for (const form of FORMS) {
        const key = cacheKey(src, 'nf4', form);
        keys.add(key);
        expect(formOfKey(key)).toEqual(form);
        expect(modelOfKey(key)).toBe(cacheKey(src, 'nf4'));
        expect(cacheKey({ kind: 'cached', key }, 'nf4')).toBe(key);
      }
    }
    expect(keys.size).toBe(sources.length * FORMS.length);
    expect(FORMS.map((f) => formLabel('nf4', f))).toEqual(['NF4 · f32 tables', 'NF4 · f16 tables', 'NF4 · f32 tables · double quant', 'NF4 · f16 tables · double quant']);
  });

  test('the manifest records the form and the list shows it; an entry written before forms is the f32 form', async () => {
    const kv = memoryStore();
    for (const form of FORMS) await entry(kv, cacheKey({ kind: 'demo' }, 'nf4', form), form);
    await entry(kv, 'hub:org/old@main:nf4', 'old');
    const store = new ModelStore({ store: kv, createGpu: noGpu });
    const listed = await store.listCached();
    expect(listed).toHaveLength(5);
    for (const c of listed) {
      expect(c.quant).toBe('nf4');
      expect(c.form).toEqual(formOfKey(c.key));
    }
    expect(listed.find((c) => c.key === 'hub:org/old@main:nf4')!.form).toEqual(F32_FORM);
    const m = (await store.cache!.get('demo:nf4#f16+dq'))!;
    expect([m.storage, m.doubleQuant]).toEqual(['f16', true]);
    // Deleting is per entry: the other forms of the model stay.
    await store.deleteCached('demo:nf4#f16');
    expect((await store.listCached()).map((c) => c.key).sort()).toEqual(['demo:nf4', 'demo:nf4#dq', 'demo:nf4#f16+dq', 'hub:org/old@main:nf4']);
  });

  test('a cached entry is not loaded in another form than it holds: the load is refused, naming both, before the GPU', async () => {
    const kv = memoryStore();
    await entry(kv, 'demo:nf4', 'old');
    const store = new ModelStore({ store: kv, createGpu: noGpu });
    for (const [opts, field] of [[{ storage: 'f16' }, 'storage'], [{ doubleQuant: true }, 'double-quant']] as const) {
      const e = await store.load({ kind: 'cached', key: 'demo:nf4' }, 'nf4', undefined, opts).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(UsageError);
      expect((e as UsageError).details).toMatchObject({ key: 'demo:nf4', field, cached: 'NF4 · f32 tables' });
      expect((e as UsageError).message).toMatch(/holds NF4 · f32 tables, not the NF4 · f(16|32) tables/);
    }
    expect(await store.isCached('demo:nf4')).toBe(true); // refused, not dropped
    // Its own form (or none named) gets as far as the GPU.
    await expect(store.load({ kind: 'cached', key: 'demo:nf4' }, 'nf4', undefined, { storage: 'f32' })).rejects.toThrow(/no GPU/);
  });

  test('a load from the source in another form does not use the cached entry of the f32 form', async () => {
    const { directorySources } = await import('../node/fs-source.ts');
    const kv = memoryStore();
    await entry(kv, 'folder:demo:nf4', 'old');
    const store = new ModelStore({ store: kv, createGpu: noGpu });
    const src = await directorySources(demo);
    const reads = { n: 0 };
    const files = Object.fromEntries(src.map(([k, f]) => [k, { name: f.name, size: f.size, read: (a: number, n: number) => (reads.n++, f.read(a, n)) }]));
    // The f32 form is the cached entry: the folder is not read.
    await expect(store.load({ kind: 'folder', name: 'demo', files }, 'nf4')).rejects.toThrow(/no GPU/);
    expect(reads.n).toBe(0);
    // f16 tables (or double quantization) are another entry: the folder is read.
    for (const form of FORMS.slice(1)) {
      reads.n = 0;
      await expect(store.load({ kind: 'folder', name: 'demo', files }, 'nf4', undefined, form)).rejects.toThrow(/no GPU/);
      expect(reads.n).toBeGreaterThan(0);
    }
  });

  test('an entry whose manifest records another form than its key names is dropped with a typed error', async () => {
    const kv = memoryStore();
    await entry(kv, 'demo:nf4#f16', F32_FORM); // written wrong: f32 tables under the f16 key
    const store = new ModelStore({ store: kv, createGpu: noGpu });
    for (const src of [{ kind: 'demo' }, { kind: 'cached', key: 'demo:nf4#f16' }] as const) {
      await entry(kv, 'demo:nf4#f16', F32_FORM);
      const e = await store.load(src, 'nf4', undefined, src.kind === 'demo' ? { storage: 'f16' } : {}).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(ModelFileError);
      expect((e as ModelFileError).details).toMatchObject({ key: 'demo:nf4#f16', field: 'storage', reason: 'cache-form-mismatch' });
      expect(await store.isCached('demo:nf4#f16')).toBe(false);
    }
  });

  test('the fit check plans a cached entry in the form it holds, whatever the run\'s settings say', async () => {
    const limits = { maxBufferSize: 2 ** 28, maxStorageBufferBindingSize: 2 ** 27 };
    const kv = memoryStore();
    await entry(kv, 'demo:nf4#f16+dq', { storage: 'f16', doubleQuant: true });
    const store = new ModelStore({ store: kv, createGpu: async () => ({ limits, lostError: undefined }) as unknown as Gpu });
    const settings = fitSettings({ ...DEFAULT_OPTIONS, storage: 'f32', seqLen: 64, batch: 1 });
    const err = await store.load({ kind: 'cached', key: 'demo:nf4#f16+dq' }, 'nf4', undefined, { fit: { settings, budget: 1024 } }).catch((x: unknown) => x);
    expect(err).toBeInstanceOf(ModelTooLargeError);
    const cfg = parseModelConfig(config);
    const held = checkFit({ dims: cfg, quant: 'nf4', tableStorage: 'f16', maxPositions: Math.min(cfg.maxPositionEmbeddings, 4096) }, { ...settings, doubleQuant: true }, { budget: 1024, limits });
    expect((err as ModelTooLargeError).details.byCategory).toEqual(held.byCategory);
  });

  test('a load from the source whose form is cached still plans the run\'s form, and may suggest another', async () => {
    const limits = { maxBufferSize: 2 ** 28, maxStorageBufferBindingSize: 2 ** 27 };
    const kv = memoryStore();
    await entry(kv, 'demo:nf4#f16', { storage: 'f16', doubleQuant: false });
    const store = new ModelStore({ store: kv, createGpu: async () => ({ limits, lostError: undefined }) as unknown as Gpu });
    const settings = fitSettings({ ...DEFAULT_OPTIONS, seqLen: 64, batch: 1 });
    const cfg = parseModelConfig(config);
    const ctx = { dims: cfg, quant: 'nf4' as const, doubleQuantKnob: true, maxPositions: Math.min(cfg.maxPositionEmbeddings, 4096) };
    const budget = checkFit(ctx, { ...settings, doubleQuant: true }, { budget: Infinity, limits }).peakBytes;
    const err = await store.load({ kind: 'demo' }, 'nf4', undefined, { fit: { settings, budget } }).catch((x: unknown) => x);
    expect(err).toBeInstanceOf(ModelTooLargeError);
    const s = (err as ModelTooLargeError).details.suggestion as { changes: string[] };
    expect(s.changes).toEqual(['double quantization on']);
  });
});
