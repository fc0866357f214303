// Registers the service worker that keeps the app shell for offline use (public/sw.js). On a first
// visit the page waits briefly until the worker controls it, so that the engine worker and its
// modules (loaded next) are fetched through it and cached; whatever the page fetched before that is
// handed over as a list of URLs to cache, whenever the worker takes control (on a busy machine that
// can be after the wait: the app goes on, and the list still reaches the worker). Offline support is
// best effort: any failure here only means the next visit needs the network, so it never blocks the
// app.
export async function registerServiceWorker(waitMs = 4000): Promise<void> {
  if (!('serviceWorker' in navigator)) return;
  try {
    const base = import.meta.env.BASE_URL;
    await navigator.serviceWorker.register(`${base}sw.js`, { scope: base });
    const handOver = () => {
      const urls = [location.href, ...performance.getEntriesByType('resource').map((e) => e.name)];
      navigator.serviceWorker.controller?.postMessage({ type: 'cache-urls', urls });
    };
    if (navigator.serviceWorker.controller) {
      handOver();
      return;
    }
    const controlled = new Promise<void>((resolve) => navigator.serviceWorker.addEventListener('controllerchange', () => resolve(), { once: true }));
    void controlled.then(handOver);
    await Promise.race([controlled, new Promise((resolve) => setTimeout(resolve, waitMs))]);
  } catch (e) {
    console.warn('webtune: offline support unavailable:', e);
  }
}
