// Device-loss detection costs nothing on ordinary failures: no timer, no wait on `device.lost`
// (which never settles on a live device). A stand-in Gpu is enough: only its loss state is read.
import { afterEach, describe, expect, test, vi } from 'vitest';
import type { Gpu } from '../gpu/runtime.ts';
import { DatasetError, DeviceLostError, ModelFileError, UsageError } from '../errors.ts';
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
