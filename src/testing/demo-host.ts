// An engine host for Node tests: the shipped demo model served by a fake fetch that honours HTTP
// Range (as a static server does) from public/models/demo, with every URL logged, and real WebGPU
// devices (Dawn; SwiftShader here) that the test destroys at the end.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Gpu } from '../gpu/runtime.ts';
import type { KeyValueStore } from '../io/cache.ts';
import type { EngineHost } from '../worker/engine.ts';

export const DEMO_DIR = fileURLToPath(new URL('../../public/models/demo/', import.meta.url));
export const DEMO_URL = 'http://site.test/models/demo/';

export function demoFetch(log: string[]) {
  return async (url: string, init?: RequestInit): Promise<Response> => {
    log.push(url);
    if (!url.startsWith(DEMO_URL)) return new Response('no', { status: 404 });
    let bytes: Uint8Array;
    try {
      bytes = readFileSync(DEMO_DIR + url.slice(DEMO_URL.length));
    } catch {
      return new Response('missing', { status: 404 });
    }
    const m = /bytes=(\d+)-(\d+)/.exec(new Headers(init?.headers).get('range') ?? '');
    if (!m) return new Response(bytes as Uint8Array<ArrayBuffer>, { status: 200, headers: { 'content-length': String(bytes.length) } });
    const a = Number(m[1]), b = Math.min(Number(m[2]), bytes.length - 1);
    return new Response(bytes.slice(a, b + 1), { status: 206, headers: { 'content-range': `bytes ${a}-${b}/${bytes.length}` } });
  };
}

/** A host over `store` whose devices are pushed to `gpus` (destroy them in afterAll). */
export function demoHost(store: KeyValueStore, log: string[], gpus: Gpu[], maxPositions = 64): EngineHost {
  return {
    store, fetch: demoFetch(log), demoUrl: DEMO_URL, maxPositions,
    createGpu: async () => {
      const g = await Gpu.create();
      gpus.push(g);
      return g;
    },
  };
}
