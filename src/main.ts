import { mount } from 'svelte';
import App from './ui/App.svelte';
import { Studio } from './ui/studio.svelte.ts';
import { connectEngine } from './ui/engine.ts';
import { registerServiceWorker } from './ui/offline.ts';

// The service worker first, so the engine worker started below is fetched through it and cached.
await registerServiceWorker();
const studio = new Studio('gpu' in navigator ? connectEngine() : undefined);
mount(App, { target: document.getElementById('app')!, props: { studio } });
studio.init();
// The e2e tests drive the test hooks (simulateDeviceLoss) through this: on the dev server, and in a
// production build only when the page is opened with ?test-hooks (e2e runs against the build).
if (import.meta.env.DEV || new URLSearchParams(location.search).has('test-hooks')) (globalThis as { __webtune?: Studio }).__webtune = studio;
