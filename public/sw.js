// webtune's service worker: keeps the app shell (HTML, scripts, styles, WGSL, tokenizer code, the
// sample datasets) so the app opens with the network cut. Models are not kept here: their quantized
// weights live in IndexedDB, managed by the engine, and caching the raw files too would store every
// model twice.
//
// Network first, cache as fallback: an online user always gets the current deploy (and a developer
// on the dev server never sees stale modules), and every successful response refreshes the copy.
// The list of files is learnt at run time instead of precached from a build manifest, so the same
// worker serves `vite build` output and the dev server's unbundled modules.
const CACHE = 'webtune-shell-v1';
const SCOPE = new URL(self.registration.scope);

/** Requests this worker leaves alone. */
function skip(request) {
  if (request.method !== 'GET') return true;
  const url = new URL(request.url);
  if (url.origin !== SCOPE.origin) return true; // Hugging Face downloads, never cached here
  if (request.headers.has('authorization') || request.headers.has('range')) return true; // tokens; partial reads
  if (url.pathname.startsWith(`${SCOPE.pathname}models/`)) return true; // weights go to IndexedDB
  if (url.pathname.endsWith('/sw.js')) return true;
  return false;
}

self.addEventListener('install', () => {
  self.skipWaiting();
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    (async () => {
      for (const name of await caches.keys()) if (name !== CACHE) await caches.delete(name);
      await self.clients.claim();
    })(),
  );
});

async function remember(request, response) {
  // Only complete, same-origin answers: an opaque or partial response would break the app offline.
  if (response.status !== 200 || response.type !== 'basic') return;
  try {
    const cache = await caches.open(CACHE);
    await cache.put(request, response);
  } catch (e) {
    // Best effort (QuotaExceededError, private mode): the app still works online.
    console.warn('webtune sw: could not cache', request.url, e);
  }
}

async function fromCache(request) {
  const cache = await caches.open(CACHE);
  const hit = await cache.match(request, { ignoreVary: true });
  if (hit) return hit;
  // Any page of the app falls back to its start page (a single-page app).
  if (request.mode === 'navigate') return cache.match(SCOPE.href, { ignoreVary: true });
  return undefined;
}

self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (skip(request)) return;
  event.respondWith(
    (async () => {
      try {
        const response = await fetch(request);
        event.waitUntil(remember(request, response.clone()));
        return response;
      } catch (err) {
        const hit = await fromCache(request);
        if (hit) return hit;
        throw err;
      }
    })(),
  );
});

// The page sends what it loaded before this worker controlled it (the first visit).
self.addEventListener('message', (event) => {
  const data = event.data;
  if (!data || data.type !== 'cache-urls' || !Array.isArray(data.urls)) return;
  event.waitUntil(
    (async () => {
      const cache = await caches.open(CACHE);
      for (const url of data.urls) {
        const request = new Request(url);
        if (skip(request) || (await cache.match(request, { ignoreVary: true }))) continue;
        try {
          await remember(request, await fetch(request));
        } catch {
          // offline already, or the file is gone: nothing to keep
        }
      }
    })(),
  );
});
