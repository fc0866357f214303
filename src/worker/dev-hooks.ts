// Test hooks for the e2e tier. They are not part of EngineApi: engine.worker.ts builds this subclass
// only on the dev server (import.meta.env.DEV), the page reaches it through main.ts's dev-only
// handle, and Node tests lose the device through the GPU their host's createGpu gave the engine.
import { Engine } from './engine.ts';

export interface EngineTestHooks {
  /** Destroy the GPU device as a driver reset would (resume after device loss). */
  simulateDeviceLoss(): Promise<void>;
  /** Download Hub models from `url` (a local stand-in) and call a request that sends nothing for
   *  `stallTimeoutMs` a stall (the e2e tier cannot wait out the default 10 s for every fault). */
  useHub(url: string, stallTimeoutMs?: number): Promise<void>;
}

export class DevEngine extends Engine implements EngineTestHooks {
  async simulateDeviceLoss(): Promise<void> {
    this.models.gpu?.device.destroy();
  }

  async useHub(url: string, stallTimeoutMs?: number): Promise<void> {
    // The model store reads these from the host object at each load.
    this.host.hubUrl = url;
    this.host.stallTimeoutMs = stallTimeoutMs;
  }
}
