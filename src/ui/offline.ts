// Registers the service worker that keeps the app shell for offline use (public/sw.js). On a first
// visit the page waits briefly until the worker controls it, so that the engine worker and its
// modules (loaded next) are fetched through it and cached; whatever the page fetched before that is
// handed over as a list of URLs to cache. Offline support is best effort: any failure here only
// means the next visit needs the network, so it never blocks the app.
export async function registerServiceWorker(waitMs = 4000): Promise<void> {
  if (!('serviceWorker' in navigator)) return;
  try {
    const base = import.meta.env.BASE_URL;
    await navigator.serviceWorker.register(`${base}sw.js`, { scope: base });
    if (!navigator.serviceWorker.controller) {
      await Promise.race([
        new Promise((resolve) => navigator.serviceWorker.addEventListener('controllerchange', resolve, { once: true })),
        new Promise((resolve) => setTimeout(resolve, waitMs)),
      ]);
    }
    const urls = [location.href, ...performance.getEntriesByType('resource').map((e) => e.name)];
    navigator.serviceWorker.controller?.postMessage({ type: 'cache-urls', urls });
  } catch (e) {
    console.warn('webtune: offline support unavailable:', e);
  }
}
