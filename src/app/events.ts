// Listeners the app layer reports to: a comlink proxy on the page, a plain function in the CLI and
// in tests. Reporting must never break the work, and the last event of a call must be deliverable
// before the call returns.

/** Calls a listener. The returned promise settles once the listener has handled the event: awaiting
 *  the last event of a run before resolving matters because comlink delivers proxy calls and return
 *  values on different ports, so "done" could otherwise reach the page after train() resolved there.
 *  Never rejects: a page that went away must not crash the worker. */
export function emit<E>(fn: ((e: E) => unknown) | undefined, e: E): Promise<void> {
  if (!fn) return Promise.resolve();
  try {
    const r = fn(e);
    if (r && typeof (r as Promise<unknown>).then === 'function') return (r as Promise<unknown>).then(() => {}, () => {});
  } catch {
    // the listener's problem, not the engine's
  }
  return Promise.resolve();
}

/** A listener whose events are sent without waiting, and whose last event can be awaited. */
export function sink<E>(fn: ((e: E) => unknown) | undefined): { send: (e: E) => void; flushed: () => Promise<void> } {
  let last = Promise.resolve();
  return { send: (e) => void (last = emit(fn, e)), flushed: () => last };
}
