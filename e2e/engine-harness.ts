// What e2e/engine.spec.ts drives: the real engine worker through the page's comlink client, and the
// same Engine class in the page itself with a store the test controls (quota, corruption). Served by
// Vite's dev server at /e2e/engine.html; the spec calls window.harness from page.evaluate.
import { proxy } from 'comlink';
import { startEngine } from '../src/worker/client.ts';
import { Engine } from '../src/worker/engine.ts';
import { idbStore, type KeyValueStore } from '../src/io/cache.ts';

/** The default store the worker uses, opened from the page (same origin, same IndexedDB). */
function workerStore(): KeyValueStore {
  return idbStore();
}

/** A store that fails every write whose key contains `failOn` with QuotaExceededError, as a full disk does. */
function quotaStore(failOn: string): KeyValueStore {
  const s = idbStore('webtune-e2e-quota');
  return { ...s, set: async (k, v) => (k.includes(failOn) ? Promise.reject(new DOMException('The quota has been exceeded.', 'QuotaExceededError')) : s.set(k, v)) };
}

function pageEngine(store: KeyValueStore): Engine {
  return new Engine({ store, fetch: (u, i) => fetch(u, i), demoUrl: new URL('/models/demo/', location.href).href, storage: navigator.storage });
}

async function sampleFile(lines: number): Promise<File> {
  const text = await (await fetch('/samples/baking-cups-to-grams.jsonl')).text();
  return new File([text.split('\n').slice(0, lines).join('\n')], 'baking-cups-to-grams.jsonl');
}

const harness = { startEngine, proxy, pageEngine, workerStore, quotaStore, idbStore, sampleFile };
export type Harness = typeof harness;
(window as unknown as { harness: Harness }).harness = harness;
document.body.dataset.ready = 'true';
