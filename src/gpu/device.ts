// Device acquisition. The only file in the project that knows whether it runs in a page, a worker
// or Node. Everything above it sees a GPUDevice with the adapter's maxima already requested.
import { GpuUnavailableError } from '../errors.ts';

export interface GrantedFeatures {
  f16: boolean;
  subgroups: boolean;
  timestampQuery: boolean;
}

export interface AcquiredDevice {
  device: GPUDevice;
  adapterInfo: { vendor: string; architecture: string; device: string; description: string; subgroupMinSize?: number; subgroupMaxSize?: number };
  features: GrantedFeatures;
  /** Every adapter feature name, for the capability page and the bench report. */
  adapterFeatures: string[];
  /** The adapter's maxima for the limits we raise (what the device was asked for). */
  requestedLimits: Record<string, number>;
}

// Limits we raise to the adapter's maximum. Without requiredLimits a device gets the spec defaults
// (128 MiB per binding, 16 KiB workgroup memory), which would make a 1B model's embedding unbindable.
const RAISED_LIMITS = [
  'maxBufferSize',
  'maxStorageBufferBindingSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxStorageBuffersPerShaderStage',
] as const;

// Node keeps a reference to its GPU object: Dawn tears the instance down when it is collected.
let nodeGpu: GPU | undefined;

function isNode(): boolean {
  return typeof process !== 'undefined' && typeof process.versions?.node === 'string';
}

const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

/** In Node on a machine whose Vulkan drivers give no adapter (no GPU; Mesa's lavapipe is rejected
 *  by Dawn), fall back to the SwiftShader driver that Debian's chromium ships: a CPU implementation,
 *  correct and slow. The Vulkan loader reads VK_ICD_FILENAMES when an instance is created, so this
 *  needs a new Dawn instance. A driver chosen with VK_ICD_FILENAMES is never overridden. */
async function swiftShaderFallback(): Promise<boolean> {
  if (!isNode() || process.env.VK_ICD_FILENAMES) return false;
  const fsName = 'node:fs';
  const fs: typeof import('node:fs') = await import(/* @vite-ignore */ fsName);
  if (!fs.existsSync(SWIFTSHADER_ICD)) return false;
  process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
  nodeGpu = undefined;
  return true;
}

/** navigator.gpu in a page or worker; the `webgpu` package (Dawn) in Node. */
export async function getGpuEntry(): Promise<GPU> {
  if (typeof navigator !== 'undefined' && navigator.gpu) return navigator.gpu;
  if (isNode()) {
    if (nodeGpu) return nodeGpu;
    // A variable specifier keeps bundlers from pulling the native module into the browser build.
    const specifier = 'webgpu';
    let mod: { create: (flags: string[]) => GPU; globals: Record<string, unknown> };
    try {
      mod = await import(/* @vite-ignore */ specifier);
    } catch (e) {
      throw new GpuUnavailableError(
        `Could not load the "webgpu" package for Node: ${(e as Error).message}`,
        'Run `npm install` in the project folder.',
      );
    }
    // GPUBufferUsage, GPUMapMode, ... are globals in a browser; Dawn's package provides them.
    Object.assign(globalThis, mod.globals);
    nodeGpu = mod.create([]);
    return nodeGpu;
  }
  throw new GpuUnavailableError(
    'This browser does not expose WebGPU (navigator.gpu is missing).',
    'Use a recent Chrome or Edge (version 113 or later) on a secure origin (https or localhost). On Linux, start Chrome with --enable-unsafe-webgpu --enable-features=Vulkan.',
  );
}

export interface AcquireOptions {
  powerPreference?: GPUPowerPreference;
  /** Ask for at most these values of the raised limits: a test stands in for a smaller device (a
   *  browser's or the spec's defaults) on this adapter, with the real device enforcing them. */
  limitCaps?: Partial<Record<(typeof RAISED_LIMITS)[number], number>>;
}

export async function acquireDevice(opts: AcquireOptions = {}): Promise<AcquiredDevice> {
  const powerPreference = opts.powerPreference ?? 'high-performance';
  let adapter = await (await getGpuEntry()).requestAdapter({ powerPreference });
  if (!adapter && (await swiftShaderFallback())) adapter = await (await getGpuEntry()).requestAdapter({ powerPreference });
  if (!adapter) {
    const hint = isNode()
      ? 'Install a Vulkan driver. Without a GPU: `apt-get install chromium libvulkan1` and set VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json.'
      : 'Your browser has WebGPU but found no usable GPU adapter. Update the GPU driver, or check chrome://gpu for "WebGPU: Disabled".';
    throw new GpuUnavailableError('No WebGPU adapter was found.', hint);
  }
  const requiredLimits: Record<string, number> = {};
  for (const name of RAISED_LIMITS) {
    const v = (adapter.limits as unknown as Record<string, number>)[name];
    if (typeof v === 'number') requiredLimits[name] = Math.min(v, opts.limitCaps?.[name] ?? v);
  }
  const wanted: GPUFeatureName[] = [];
  for (const f of ['shader-f16', 'subgroups', 'timestamp-query'] as GPUFeatureName[]) {
    if (adapter.features.has(f)) wanted.push(f);
  }
  const device = await adapter.requestDevice({ requiredLimits, requiredFeatures: wanted, label: 'webtune.device' });
  const info = adapter.info;
  return {
    device,
    adapterInfo: {
      vendor: info.vendor,
      architecture: info.architecture,
      device: info.device,
      description: info.description,
      subgroupMinSize: (info as unknown as { subgroupMinSize?: number }).subgroupMinSize,
      subgroupMaxSize: (info as unknown as { subgroupMaxSize?: number }).subgroupMaxSize,
    },
    features: {
      f16: device.features.has('shader-f16'),
      subgroups: device.features.has('subgroups'),
      timestampQuery: device.features.has('timestamp-query'),
    },
    adapterFeatures: [...adapter.features].sort(),
    requestedLimits: requiredLimits,
  };
}
