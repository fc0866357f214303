// A GPU self-test the capability page runs (in the worker) and the e2e test runs in the page too:
// RMSNorm on the GPU against its CPU twin. It proves the same runtime and kernels work in a page, a
// worker and Node, and tells the user their GPU computes correctly before they spend an hour training.
import { Gpu } from '../gpu/runtime.ts';
import { rmsnormForward } from '../kernels/rmsnorm_forward.ts';
import { rmsnormForwardRef } from '../kernels/rmsnorm_forward.ref.ts';

export interface Capabilities {
  adapter: Gpu['adapterInfo'];
  features: Gpu['features'];
  adapterFeatures: string[];
  limits: Record<string, number>;
}

export interface SelfTestResult {
  ok: boolean;
  kernel: string;
  maxAbsError: number;
  ms: number;
}

export function capabilities(gpu: Gpu): Capabilities {
  const limits: Record<string, number> = {};
  for (const k of [
    'maxBufferSize',
    'maxStorageBufferBindingSize',
    'maxComputeWorkgroupStorageSize',
    'maxComputeInvocationsPerWorkgroup',
    'maxComputeWorkgroupsPerDimension',
    'maxStorageBuffersPerShaderStage',
  ]) {
    limits[k] = (gpu.limits as unknown as Record<string, number>)[k];
  }
  return { adapter: gpu.adapterInfo, features: gpu.features, adapterFeatures: gpu.adapterFeatures, limits };
}

export async function selfTest(gpu?: Gpu): Promise<SelfTestResult> {
  const own = !gpu;
  const g = gpu ?? (await Gpu.create());
  try {
    const t0 = performance.now();
    const N = 37, C = 131, eps = 1e-6;
    const x = new Float32Array(N * C).map((_, i) => Math.sin(i * 0.37) * 2);
    const w = new Float32Array(C).map((_, i) => 0.5 + (i % 7) / 7);
    const y = g.tensor('selftest.y', 'scratch', N * C * 4);
    const rstd = g.tensor('selftest.rstd', 'scratch', N * 4);
    const xT = g.tensor('selftest.x', 'scratch', x);
    const wT = g.tensor('selftest.w', 'scratch', w);
    rmsnormForward(g, y, rstd, xT, wT, N, C, eps);
    const got = await g.readF32(y);
    const want = new Float32Array(N * C);
    rmsnormForwardRef(want, new Float32Array(N), x, w, N, C, eps);
    let maxAbsError = 0;
    for (let i = 0; i < got.length; i++) maxAbsError = Math.max(maxAbsError, Math.abs(got[i] - want[i]));
    for (const t of [y, rstd, xT, wT]) g.free(t);
    return { ok: maxAbsError < 1e-4, kernel: 'rmsnorm_forward', maxAbsError, ms: performance.now() - t0 };
  } finally {
    if (own) g.destroy();
  }
}
