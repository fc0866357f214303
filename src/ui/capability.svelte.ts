// UI state for the capability check. Components read the $state fields; the engine is handed in
// by the Studio, which owns the one worker client.
import { WebtuneError } from '../errors.ts';
import type { Capabilities, SelfTestResult } from '../app/selftest.ts';
import type { Engine } from './engine.ts';

export type Phase = 'checking' | 'ready' | 'no-webgpu' | 'failed';

export class CapabilityCheck {
  phase = $state<Phase>('checking');
  caps = $state<Capabilities | undefined>();
  selfTest = $state<SelfTestResult | undefined>();
  error = $state<{ message: string; hint: string } | undefined>();

  async run(engine: Engine | undefined): Promise<void> {
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
}
