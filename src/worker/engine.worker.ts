// The worker owns the GPU device. The page talks to it only through EngineApi (api.ts) over comlink;
// the engine itself (engine.ts) is host-neutral, and this file gives it the worker's IndexedDB,
// fetch and storage manager.
import { expose } from 'comlink';
import { idbStore } from '../io/cache.ts';
import { installErrorTransfer } from './errors-transfer.ts';
import { Engine } from './engine.ts';
import { DevEngine } from './dev-hooks.ts';
import { TEST_HOOKS_WORKER_NAME } from './client.ts';

export type { EngineApi } from './api.ts';

installErrorTransfer();

// The dev server's worker also answers the e2e tier's test hooks (dev-hooks.ts); a build does only when
// the page was opened with ?test-hooks (the e2e tier runs the site against the build).
const hooks = import.meta.env.DEV || self.name === TEST_HOOKS_WORKER_NAME;
const engine = new (hooks ? DevEngine : Engine)({
  store: idbStore(),
  fetch: (input, init) => fetch(input, init),
  // BASE_URL is where the site is served from ("/" in dev, a sub-path on GitHub Pages).
  demoUrl: new URL(`${import.meta.env.BASE_URL}models/demo/`, self.location.href).href,
  storage: typeof navigator !== 'undefined' ? navigator.storage : undefined,
  locks: typeof navigator !== 'undefined' ? navigator.locks : undefined,
});

expose(engine);
