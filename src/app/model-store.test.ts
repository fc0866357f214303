// Device-loss detection costs nothing on ordinary failures: no timer, no wait on `device.lost`
// (which never settles on a live device). A stand-in Gpu is enough: only its loss state is read.
import { afterEach, describe, expect, test, vi } from 'vitest';
import type { Gpu } from '../gpu/runtime.ts';
import { DatasetError, DeviceLostError, ModelFileError, ModelTooLargeError, UsageError } from '../errors.ts';
import { DEFAULT_OPTIONS } from './options.ts';
import { checkFit, fitSettings } from './fit.ts';
import { parseModelConfig } from '../model/config.ts';
import { readFileSync } from 'node:fs';
import { ModelStore } from './model-store.ts';

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
    try {
      hub.faults.push({ file: 'model.safetensors', kind: 'stall', afterBytes: 0, times: 100 });
      const store = new ModelStore({ fetch: (u, i) => fetch(u, i), hubUrl: hub.url, stallTimeoutMs: 300, createGpu: async () => Promise.reject(new Error('no GPU needed')) });
      let stalls = 0;
      const secondHeld = new Promise<void>((resolve) => hub.on('stall', () => ++stalls === 2 && resolve()));
      const events: string[] = [];
      const loading = store.load({ kind: 'hub', id: 'webtune/demo' }, 'nf4', (e) => void (e.phase === 'retry' && events.push(`${e.file} ${e.stalled}`))).catch((e: unknown) => e);
      await secondHeld;
      expect(hub.open).toBe(1);
      store.cancel();
      const err = await loading;
      expect(err).toBeInstanceOf(ModelFileError);
      expect((err as ModelFileError).details.reason).toBe('cancelled');
      expect(events[0]).toBe('model.safetensors true');
      await hub.idle();
      expect(hub.requests.filter((r) => r.fault === 'stall').map((r) => r.aborted)).toEqual([true, true]);
      expect(hub.requests.every((r) => r.path.startsWith('/webtune/demo/resolve/main/') || r.path.startsWith('/cdn/'))).toBe(true);
    } finally {
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
      // The site's context: f32 tables (the cache's form), the host's RoPE rows.
      const ctx = { dims: cfg, quant: 'nf4' as const, tableStorage: 'f32' as const, maxPositions: Math.min(cfg.maxPositionEmbeddings, 4096) };
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
    const err = await store.load({ kind: 'folder', name: 'demo', files }, 'nf4', undefined, { fit: { settings, budget: 1024, loadFollowsRun: true, doubleQuantKnob: true } }).catch((x: unknown) => x);
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
