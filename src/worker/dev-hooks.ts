// Test hooks for the e2e tier. They are not part of EngineApi: engine.worker.ts builds this subclass
// only on the dev server (import.meta.env.DEV), the page reaches it through main.ts's dev-only
// handle, and Node tests lose the device through the GPU their host's createGpu gave the engine.
import { Engine } from './engine.ts';

export interface EngineTestHooks {
  /** Destroy the GPU device as a driver reset would (resume after device loss). */
  simulateDeviceLoss(): Promise<void>;
}

export class DevEngine extends Engine implements EngineTestHooks {
  async simulateDeviceLoss(): Promise<void> {
    this.models.gpu?.device.destroy();
  }
}
