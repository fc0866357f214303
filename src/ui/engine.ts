// The page's handle on the engine worker, typed by the contract in worker/api.ts. Only the state
// classes (*.svelte.ts) hold it; components never see the wire.
import { proxy, type Remote } from 'comlink';
import type { EngineApi } from '../worker/api.ts';
import { startEngine } from '../worker/client.ts';

export type Engine = Remote<EngineApi>;

/** testHooks: the worker also answers the e2e tier's test hooks (worker/dev-hooks.ts). */
export function connectEngine(testHooks = false): Engine {
  return startEngine(testHooks);
}

/** Callbacks must cross as comlink proxies so events stream while the call is pending. */
export function callback<A extends unknown[]>(fn: (...args: A) => void): (...args: A) => void {
  return proxy(fn);
}
