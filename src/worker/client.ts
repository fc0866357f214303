// The page side of the worker boundary.
import { wrap, type Remote } from 'comlink';
import type { EngineApi } from './engine.worker.ts';
import { installErrorTransfer } from './errors-transfer.ts';

/** The worker learns from its name whether to answer test hooks: a build has no other channel
 *  before the first call, and the hooks stay out of EngineApi. */
export function startEngine(testHooks = false): Remote<EngineApi> {
  installErrorTransfer();
  const worker = new Worker(new URL('./engine.worker.ts', import.meta.url), { type: 'module', name: testHooks ? TEST_HOOKS_WORKER_NAME : 'webtune-engine' });
  return wrap<EngineApi>(worker);
}

/** The engine worker's name when the page asked for the e2e test hooks (?test-hooks). */
export const TEST_HOOKS_WORKER_NAME = 'webtune-engine+test-hooks';
