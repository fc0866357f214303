// The worker owns the GPU device. The page talks to it only through this API (comlink).
import { expose } from 'comlink';
import { Gpu } from '../gpu/runtime.ts';
import { capabilities, selfTest, type Capabilities, type SelfTestResult } from '../gpu/selftest.ts';
import { installErrorTransfer } from './errors-transfer.ts';

installErrorTransfer();

let gpu: Gpu | undefined;

async function device(): Promise<Gpu> {
  if (!gpu || gpu.lostError) gpu = await Gpu.create();
  return gpu;
}

const api = {
  async capabilities(): Promise<Capabilities> {
    return capabilities(await device());
  },
  async selfTest(): Promise<SelfTestResult> {
    return selfTest(await device());
  },
};

export type EngineApi = typeof api;

expose(api);
