// UI state for the capability check. Owns the worker client; components read the $state fields.
import { startEngine } from '../worker/client.ts';
import { WebtuneError } from '../errors.ts';
import type { Capabilities, SelfTestResult } from '../gpu/selftest.ts';

export type Phase = 'checking' | 'ready' | 'no-webgpu' | 'failed';

export class CapabilityCheck {
  phase = $state<Phase>('checking');
  caps = $state<Capabilities | undefined>();
  selfTest = $state<SelfTestResult | undefined>();
  error = $state<{ message: string; hint: string } | undefined>();

  async run(): Promise<void> {
    if (!('gpu' in navigator)) {
      this.phase = 'no-webgpu';
      return;
    }
    try {
      const engine = startEngine();
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
