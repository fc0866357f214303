// A GPUDevice that only counts. It implements the part of WebGPU the runtime uses (buffers, shader
// modules, pipelines, bind groups, command encoders and compute passes, queue writes and submits,
// buffer mapping) and records how often each is called, doing nothing else: no memory is held for
// buffers, no shader is compiled, a mapped buffer reads as zeros. Running the real model code against
// it tells what a training step or a decoded token asks of the GPU (`webtune bench --count`) on a
// machine with no GPU, in a second, at any model size.
import type { AcquiredDevice } from './device.ts';
import { Gpu } from './runtime.ts';

export interface DeviceCounts {
  dispatches: number;
  /** Compute passes begun. */
  passes: number;
  /** queue.submit calls. */
  submits: number;
  /** Buffers mapped for reading (mapAsync), and the bytes mapped. */
  readbacks: number;
  readbackBytes: number;
  buffersCreated: number;
  bindGroupsCreated: number;
  /** Buffer-to-buffer copies and clears recorded in command encoders. */
  copies: number;
  /** queue.writeBuffer calls, and their bytes. */
  writes: number;
  writeBytes: number;
  pipelinesCreated: number;
}

export function zeroCounts(): DeviceCounts {
  return {
    dispatches: 0, passes: 0, submits: 0, readbacks: 0, readbackBytes: 0, buffersCreated: 0, bindGroupsCreated: 0,
    copies: 0, writes: 0, writeBytes: 0, pipelinesCreated: 0,
  };
}

/** a - b, field by field. */
export function diffCounts(a: DeviceCounts, b: DeviceCounts): DeviceCounts {
  const out = zeroCounts();
  for (const k of Object.keys(out) as (keyof DeviceCounts)[]) out[k] = a[k] - b[k];
  return out;
}

// WebGPU's flag values, for hosts (plain Node) where no WebGPU implementation defined them.
const BUFFER_USAGE = {
  MAP_READ: 0x1, MAP_WRITE: 0x2, COPY_SRC: 0x4, COPY_DST: 0x8, INDEX: 0x10, VERTEX: 0x20, UNIFORM: 0x40,
  STORAGE: 0x80, INDIRECT: 0x100, QUERY_RESOLVE: 0x200,
};
const MAP_MODE = { READ: 0x1, WRITE: 0x2 };

/** Limits of a desktop GPU under Dawn (the values `--plan-only` assumes for binding sizes). */
export const COUNTING_LIMITS: Record<string, number> = {
  maxBufferSize: 2 ** 32,
  maxStorageBufferBindingSize: 2 ** 31 - 4,
  maxUniformBufferBindingSize: 65536,
  maxComputeWorkgroupStorageSize: 32768,
  maxComputeInvocationsPerWorkgroup: 1024,
  maxComputeWorkgroupSizeX: 1024,
  maxComputeWorkgroupSizeY: 1024,
  maxComputeWorkgroupSizeZ: 64,
  maxComputeWorkgroupsPerDimension: 65535,
  maxStorageBuffersPerShaderStage: 10,
  maxBindGroups: 4,
  maxBindingsPerBindGroup: 1000,
  minStorageBufferOffsetAlignment: 256,
  minUniformBufferOffsetAlignment: 256,
};

/** The counting device, as an AcquiredDevice the runtime can be built on. */
export function countingDevice(limits: Record<string, number> = COUNTING_LIMITS): { acquired: AcquiredDevice; counts: DeviceCounts } {
  const g = globalThis as Record<string, unknown>;
  g.GPUBufferUsage ??= BUFFER_USAGE;
  g.GPUMapMode ??= MAP_MODE;
  const counts = zeroCounts();
  const object = (label?: string) => ({ label: label ?? '' });
  const buffer = (d: GPUBufferDescriptor) => {
    counts.buffersCreated++;
    // Memory only for what the caller fills at creation (uniforms, small uploads) or reads back.
    let mapped: ArrayBuffer | undefined = d.mappedAtCreation ? new ArrayBuffer(d.size) : undefined;
    return {
      ...object(d.label), size: d.size, usage: d.usage, mapState: 'unmapped',
      async mapAsync(_mode: number, offset = 0, size = d.size - offset) {
        counts.readbacks++;
        counts.readbackBytes += size;
        mapped = new ArrayBuffer(size);
      },
      getMappedRange(offset = 0, size?: number) {
        if (!mapped) throw new Error(`counting device: ${d.label} is not mapped`);
        return size === undefined && offset === 0 ? mapped : mapped.slice(offset, size === undefined ? undefined : offset + size);
      },
      unmap() {
        mapped = undefined;
      },
      destroy() {
        mapped = undefined;
      },
    };
  };
  const pass = (label?: string) => {
    counts.passes++;
    return {
      ...object(label),
      setPipeline() {},
      setBindGroup() {},
      dispatchWorkgroups() {
        counts.dispatches++;
      },
      end() {},
    };
  };
  const encoder = (label?: string) => ({
    ...object(label),
    beginComputePass: (d?: GPUComputePassDescriptor) => pass(d?.label),
    copyBufferToBuffer() {
      counts.copies++;
    },
    clearBuffer() {
      counts.copies++;
    },
    finish: () => object('command buffer'),
  });
  const device = {
    ...object('webtune.counting'),
    limits,
    features: new Set<string>(),
    lost: new Promise<never>(() => {}),
    queue: {
      ...object('queue'),
      writeBuffer(_b: GPUBuffer, _o: number, data: ArrayBufferLike | ArrayBufferView, _dataOffset = 0, size?: number) {
        counts.writes++;
        counts.writeBytes += size ?? data.byteLength;
      },
      submit() {
        counts.submits++;
      },
      onSubmittedWorkDone: async () => {},
    },
    addEventListener() {},
    pushErrorScope() {},
    popErrorScope: async () => null,
    createBuffer: buffer,
    createShaderModule: (d: GPUShaderModuleDescriptor) => ({ ...object(d.label), getCompilationInfo: async () => ({ messages: [] }) }),
    createComputePipeline: (d: GPUComputePipelineDescriptor) => {
      counts.pipelinesCreated++;
      return { ...object(d.label), getBindGroupLayout: () => object('layout') };
    },
    createBindGroup: (d: GPUBindGroupDescriptor) => {
      counts.bindGroupsCreated++;
      return object(d.label);
    },
    createCommandEncoder: (d?: GPUCommandEncoderDescriptor) => encoder(d?.label),
    destroy() {},
  };
  const acquired: AcquiredDevice = {
    device: device as unknown as GPUDevice,
    adapterInfo: { vendor: 'webtune', architecture: 'counting', device: 'counting', description: 'a device that only counts (no GPU)' },
    features: { f16: false, subgroups: false, timestampQuery: false },
    adapterFeatures: [],
    requestedLimits: limits,
  };
  return { acquired, counts };
}

/** A runtime over the counting device. */
export function countingGpu(limits?: Record<string, number>): { gpu: Gpu; counts: DeviceCounts } {
  const { acquired, counts } = countingDevice(limits);
  return { gpu: new Gpu(acquired), counts };
}
