// UI state for the capability check. Components read the $state fields; the engine is handed in
// by the Studio, which owns the one worker client.
import { WebtuneError } from '../errors.ts';
import type { Capabilities, SelfTestResult } from '../app/selftest.ts';
import type { Engine } from './engine.ts';
import type { ShapeFit, TrainOptions } from '../worker/api.ts';

export type Phase = 'checking' | 'ready' | 'no-webgpu' | 'failed';

export class CapabilityCheck {
  phase = $state<Phase>('checking');
  caps = $state<Capabilities | undefined>();
  selfTest = $state<SelfTestResult | undefined>();
  error = $state<{ message: string; hint: string } | undefined>();
  /** The fit meter: the training form's run planned for each named model shape on this GPU. */
  fits = $state<ShapeFit[] | undefined>();
  private engine: Engine | undefined;

  async run(engine: Engine | undefined): Promise<void> {
    this.engine = engine;
    if (!engine) {
      this.phase = 'no-webgpu';
      return;
    }
    try {
      this.caps = await engine.capabilities();
      this.selfTest = await engine.selfTest();
      this.phase = 'ready';
    } catch (e) {
      const w = e instanceof WebtuneError ? e : undefined;
      this.error = { message: (e as Error).message, hint: w?.hint ?? '' };
      this.phase = w?.code === 'gpu-unavailable' ? 'no-webgpu' : 'failed';
    }
  }

  /** Plans `opts` for every named shape against `budget`; keeps the last table when asked with
   *  options the form has not finished (the engine refuses those). */
  async refreshFits(opts: TrainOptions, budget: number | undefined): Promise<void> {
    if (this.phase !== 'ready' || !this.engine) return;
    try {
      this.fits = await this.engine.fitTable(opts, budget);
    } catch {
      // best effort: the table is a guide, and the training estimate reports the same plan's errors
    }
  }
}
