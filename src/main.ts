import { mount } from 'svelte';
import App from './ui/App.svelte';
import { Studio } from './ui/studio.svelte.ts';
import { connectEngine } from './ui/engine.ts';
import { registerServiceWorker } from './ui/offline.ts';
import type { Remote } from 'comlink';
import type { EngineTestHooks } from './worker/dev-hooks.ts';

// The service worker first, so the engine worker started below is fetched through it and cached.
await registerServiceWorker();
const engine = 'gpu' in navigator ? connectEngine() : undefined;
const studio = new Studio(engine);
mount(App, { target: document.getElementById('app')!, props: { studio } });
studio.init();
// The e2e tests read the studio and drive the dev worker's test hooks (worker/dev-hooks.ts) through
// these; dev server only.
if (import.meta.env.DEV) Object.assign(globalThis, { __webtune: studio, __webtuneHooks: engine as unknown as Remote<EngineTestHooks> | undefined });
