import { mount } from 'svelte';
import App from './ui/App.svelte';
import { Studio } from './ui/studio.svelte.ts';
import { connectEngine } from './ui/engine.ts';
import { registerServiceWorker } from './ui/offline.ts';
import type { Remote } from 'comlink';
import type { EngineTestHooks } from './worker/dev-hooks.ts';

// The service worker first, so the engine worker started below is fetched through it and cached.
await registerServiceWorker();
const TEST_HOOKS = new URLSearchParams(location.search).has('test-hooks');
const engine = 'gpu' in navigator ? connectEngine(TEST_HOOKS) : undefined;
const studio = new Studio(engine);
mount(App, { target: document.getElementById('app')!, props: { studio } });
studio.init();
// The e2e tests read the studio and drive the worker's test hooks (worker/dev-hooks.ts) through
// these: on the dev server, and in a production build only when the page is opened with ?test-hooks
// (the site's e2e runs against the build).
if (import.meta.env.DEV || TEST_HOOKS) Object.assign(globalThis, { __webtune: studio, __webtuneHooks: engine as unknown as Remote<EngineTestHooks> | undefined });
