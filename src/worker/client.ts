// The page side of the worker boundary.
import { wrap, type Remote } from 'comlink';
import type { EngineApi } from './engine.worker.ts';
import { installErrorTransfer } from './errors-transfer.ts';

export function startEngine(): Remote<EngineApi> {
  installErrorTransfer();
  const worker = new Worker(new URL('./engine.worker.ts', import.meta.url), { type: 'module', name: 'webtune-engine' });
  return wrap<EngineApi>(worker);
}
