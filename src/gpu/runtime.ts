// The whole GPU surface the engine uses, in the spirit of gpu.cpp's five verbs:
//   Gpu.create()                  device with the adapter's maxima, typed errors, loss tracking
//   gpu.tensor(label, cat, size)  a storage buffer, counted by category (weights, lora, ...)
//   gpu.kernel(name, wgsl, opts)  a compute pipeline, cached by (kernel, entry point, overrides);
//                                 `//#include NAME` lines take shaders/lib/NAME.wgsl (wgsl-lib.ts)
//   gpu.dispatch(k, bindings, params, workgroups)
//                                 recorded into the step's command encoder and compute pass,
//                                 submitted in chunks of SUBMIT_EVERY dispatches so the GPU starts
//                                 on the first while JavaScript records the rest
//   gpu.read(t)                   the only way back to the CPU; counted as a readback
//   gpu.scalars(label, data)      a small buffer of values that change every step (dropout seeds,
//                                 the optimizer's step, a decode position), rewritten in place so
//                                 the bind groups holding it are made once
// Errors from pipeline and buffer creation are captured with error scopes and surface, typed, at
// the next `await gpu.check()` (which read() calls first).
import { acquireDevice, type AcquiredDevice, type AcquireOptions, type GrantedFeatures } from './device.ts';
import {
  DeviceLostError,
  GpuOutOfMemoryError,
  GpuValidationError,
  ShaderCompileError,
  type WebtuneError,
} from '../errors.ts';
import { expandIncludes, sourceLine } from './wgsl-lib.ts';

export const CATEGORIES = ['weights', 'lora', 'optimizer', 'activations', 'kv-cache', 'scratch'] as const;
export type Category = (typeof CATEGORIES)[number];

export interface Tensor {
  readonly buffer: GPUBuffer;
  /** Bytes. Always a multiple of 4 (WebGPU copy and binding rule). */
  readonly size: number;
  readonly category: Category;
  readonly label: string;
}

/** A sub-range of a tensor; offset must be a multiple of the device's storage offset alignment (256). */
export interface View {
  tensor: Tensor;
  offset: number;
  size: number;
}

/** A small persistent buffer of per-step values (see Gpu.scalars): binds as the uniform `params`
 *  (binding 0) or as a storage binding. Not counted by category: like the content-cached uniforms,
 *  these few bytes are the runtime's, not the memory plan's. */
export interface Scalars {
  readonly buffer: GPUBuffer;
  readonly size: number;
  readonly label: string;
}

export type Binding = Tensor | View | Scalars;

export interface KernelOptions {
  entry?: string;
  overrides?: Record<string, number | boolean>;
}

export interface Kernel {
  readonly name: string;
  readonly pipeline: GPUComputePipeline;
  readonly key: string;
}

export interface Counters {
  dispatches: number;
  readbacks: number;
  submits: number;
  /** Compute passes begun, bytes read back, GPU buffers and bind groups created (a warm training
   *  step or decoded token should create none). */
  passes: number;
  readbackBytes: number;
  buffersCreated: number;
  bindGroupsCreated: number;
}

/** Uniform parameters: u32 fields first, then f32 fields, matching the WGSL `Params` struct order. */
export function params(u32s: number[], f32s: number[] = []): ArrayBuffer {
  // Uniform structs are sized in 16-byte steps.
  const n = Math.max(4, Math.ceil((u32s.length + f32s.length) / 4) * 4);
  const buf = new ArrayBuffer(n * 4);
  const u = new Uint32Array(buf);
  const f = new Float32Array(buf);
  u32s.forEach((v, i) => {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`params: u32 field ${i} is ${v}`);
    u[i] = v;
  });
  f32s.forEach((v, i) => (f[u32s.length + i] = v));
  return buf;
}

/** Split a workgroup count over x and y: WebGPU allows at most 65535 per dimension. Kernels rebuild
 *  the linear index as wid.x + wid.y * num_workgroups.x and bounds-check it. */
export function grid(workgroups: number, maxPerDim = 65535): [number, number] {
  if (workgroups <= maxPerDim) return [Math.max(1, workgroups), 1];
  const y = Math.ceil(workgroups / maxPerDim);
  return [Math.ceil(workgroups / y), y];
}

const MAX_CACHED_UNIFORMS = 4096;

/** Dispatches recorded before the encoder is submitted on its own: a training step of a 1B model
 *  (about 650) goes out in three chunks, each one compute pass, and the GPU runs the first while the
 *  rest are recorded; a decoded token (under 300) in one or two. */
export const SUBMIT_EVERY = 256;

/** Staging buffers up to this size are kept for the next readback (a logits row is 513 KB at a
 *  128k vocabulary); larger ones (whole tensors read in tests and exports) are destroyed after use. */
const MAX_POOLED_STAGING = 4 * 2 ** 20;

function isView(b: Binding): b is View {
  return (b as View).tensor !== undefined;
}

export class Gpu {
  readonly device: GPUDevice;
  readonly adapterInfo: AcquiredDevice['adapterInfo'];
  readonly adapterFeatures: string[];
  readonly requestedLimits: Record<string, number>;
  readonly features: GrantedFeatures;
  readonly limits: GPUSupportedLimits;
  readonly counters: Counters = { dispatches: 0, readbacks: 0, submits: 0, passes: 0, readbackBytes: 0, buffersCreated: 0, bindGroupsCreated: 0 };
  /** Dispatches recorded per kernel name (what `webtune bench --count` breaks a step down by). */
  readonly kernelDispatches = new Map<string, number>();
  /** Live bytes per category, and the peak of their sum. */
  readonly bytes: Record<Category, number> = Object.fromEntries(CATEGORIES.map((c) => [c, 0])) as Record<Category, number>;
  peakBytes = 0;
  /** Resolves once, when the device is lost; `lostError` is then set and further work throws it. */
  readonly lost: Promise<DeviceLostError>;
  lostError: DeviceLostError | undefined;

  private modules = new Map<string, GPUShaderModule>();
  private kernels = new Map<string, Kernel>();
  private uniforms = new Map<string, GPUBuffer>();
  private bindGroups = new Map<string, GPUBindGroup>();
  private scalarSlots = new Map<string, Scalars & { last: Uint8Array }>();
  /** Scalars buffers bound by work recorded since the last submit: rewriting one flushes first. */
  private scalarsInEncoder = new Set<GPUBuffer>();
  /** Free staging buffers by size (powers of two), reused by read(). */
  private staging = new Map<number, GPUBuffer[]>();
  private bufferIds = new WeakMap<GPUBuffer, number>();
  private nextBufferId = 1;
  private pending: Promise<WebtuneError | null>[] = [];
  private uncaptured: WebtuneError[] = [];
  private encoder: GPUCommandEncoder | undefined;
  private pass: GPUComputePassEncoder | undefined;
  /** Dispatches recorded in the current encoder. */
  private recorded = 0;

  static async create(opts: AcquireOptions = {}): Promise<Gpu> {
    return new Gpu(await acquireDevice(opts));
  }

  constructor(acq: AcquiredDevice) {
    this.device = acq.device;
    this.adapterInfo = acq.adapterInfo;
    this.adapterFeatures = acq.adapterFeatures;
    this.requestedLimits = acq.requestedLimits;
    this.features = acq.features;
    this.limits = acq.device.limits;
    this.lost = acq.device.lost.then((info) => {
      this.lostError = new DeviceLostError(info.reason, info.message || 'no message from the driver');
      return this.lostError;
    });
    this.device.addEventListener('uncapturederror', (ev) => {
      const e = (ev as GPUUncapturedErrorEvent).error;
      this.uncaptured.push(new GpuValidationError('an uncaptured GPU operation', e.message));
    });
  }

  get allocatedBytes(): number {
    let s = 0;
    for (const c of CATEGORIES) s += this.bytes[c];
    return s;
  }

  private throwIfLost(): void {
    if (this.lostError) throw this.lostError;
  }

  // ---------------------------------------------------------------- buffers

  /** A zero-filled storage buffer of `size` bytes (rounded up to 4), or one holding `data`. */
  tensor(label: string, category: Category, sizeOrData: number | ArrayBufferView): Tensor {
    this.throwIfLost();
    const data = typeof sizeOrData === 'number' ? undefined : sizeOrData;
    const size = Math.max(4, Math.ceil((data ? data.byteLength : (sizeOrData as number)) / 4) * 4);
    if (size > this.limits.maxBufferSize) {
      throw new GpuOutOfMemoryError(label, size, { ...this.bytes }, this.limits.maxBufferSize);
    }
    this.device.pushErrorScope('out-of-memory');
    const buffer = this.device.createBuffer({
      label,
      size,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
      mappedAtCreation: data !== undefined,
    });
    this.counters.buffersCreated++;
    const held = { ...this.bytes };
    this.pending.push(
      this.device.popErrorScope().then((e) => (e ? new GpuOutOfMemoryError(label, size, held) : null)),
    );
    if (data) {
      new Uint8Array(buffer.getMappedRange()).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      buffer.unmap();
    }
    this.bufferIds.set(buffer, this.nextBufferId++);
    this.bytes[category] += size;
    this.peakBytes = Math.max(this.peakBytes, this.allocatedBytes);
    return { buffer, size, category, label };
  }

  /** Overwrite part of a tensor. Work already recorded is submitted first, so it sees the old data. */
  upload(t: Tensor, data: ArrayBufferView, offsetBytes = 0): void {
    this.throwIfLost();
    if (this.encoder) this.flush();
    this.device.queue.writeBuffer(t.buffer, offsetBytes, data.buffer, data.byteOffset, data.byteLength);
  }

  free(t: Tensor): void {
    this.bytes[t.category] -= t.size;
    // Bind groups holding the buffer would keep it alive; drop them.
    const id = this.bufferIds.get(t.buffer);
    for (const k of [...this.bindGroups.keys()]) if (k.includes(`|b${id}@`)) this.bindGroups.delete(k);
    t.buffer.destroy();
  }

  // ---------------------------------------------------------------- kernels

  kernel(name: string, code: string, opts: KernelOptions = {}): Kernel {
    const entry = opts.entry ?? 'main';
    const overrides = opts.overrides ?? {};
    const key = `${name}:${entry}:${JSON.stringify(overrides)}`;
    const hit = this.kernels.get(key);
    if (hit) return hit;
    this.throwIfLost();
    let module = this.modules.get(name);
    if (!module) {
      const wgsl = expandIncludes(name, code);
      this.device.pushErrorScope('validation');
      module = this.device.createShaderModule({ label: `${name}.module`, code: wgsl });
      const m = module;
      this.pending.push(
        Promise.all([m.getCompilationInfo(), this.device.popErrorScope()]).then(([info, scopeErr]) => {
          const msgs = info.messages
            .filter((x) => x.type === 'error')
            .map((x) => `${sourceLine(name, wgsl, x.lineNum)}:${x.linePos}: ${x.message}`);
          if (msgs.length === 0 && scopeErr) msgs.push(scopeErr.message);
          return msgs.length ? new ShaderCompileError(name, msgs) : null;
        }),
      );
      this.modules.set(name, module);
    }
    const constants: Record<string, number> = {};
    for (const [k, v] of Object.entries(overrides)) constants[k] = typeof v === 'boolean' ? Number(v) : v;
    this.device.pushErrorScope('validation');
    const pipeline = this.device.createComputePipeline({
      label: `${name}.${entry}.pipeline`,
      layout: 'auto',
      compute: { module, entryPoint: entry, constants },
    });
    this.pending.push(
      this.device.popErrorScope().then((e) => (e ? new ShaderCompileError(`${name}.${entry}`, [e.message]) : null)),
    );
    const k = { name: `${name}.${entry}`, pipeline, key };
    this.kernels.set(key, k);
    return k;
  }

  /** Uniforms are cached by content: a training step repeats the same shapes, so after the first
   *  step no uniform is written at all. */
  private uniform(data: ArrayBuffer): GPUBuffer {
    const bytes = new Uint8Array(data);
    let key = '';
    for (let i = 0; i < bytes.length; i++) key += bytes[i].toString(16).padStart(2, '0');
    let buf = this.uniforms.get(key);
    if (!buf) {
      buf = this.device.createBuffer({
        label: 'runtime.uniform',
        size: data.byteLength,
        usage: GPUBufferUsage.UNIFORM,
        mappedAtCreation: true,
      });
      new Uint8Array(buf.getMappedRange()).set(bytes);
      buf.unmap();
      this.counters.buffersCreated++;
      this.uniforms.set(key, buf);
      this.bufferIds.set(buf, this.nextBufferId++);
    }
    return buf;
  }

  /**
   * The persistent buffer named `label`, holding `data` from here on in queue order: work recorded
   * before this call sees the old values, work recorded after it the new ones. For values that
   * change every step or token, which as content-cached uniforms would make a new buffer and bind
   * group each time. Created once per (label, size); rewritten (queue.writeBuffer) only when `data`
   * differs from what it holds, and if work bound to it is still being recorded, that work is
   * submitted first. Usable as the uniform `params` of a dispatch or as a storage binding.
   */
  scalars(label: string, data: ArrayBuffer | ArrayBufferView): Scalars {
    this.throwIfLost();
    const bytes = ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : new Uint8Array(data);
    const size = Math.max(16, Math.ceil(bytes.length / 16) * 16);
    const key = `${label}:${size}`;
    let slot = this.scalarSlots.get(key);
    if (!slot) {
      const buffer = this.device.createBuffer({
        label, size, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST, mappedAtCreation: true,
      });
      new Uint8Array(buffer.getMappedRange()).set(bytes);
      buffer.unmap();
      this.counters.buffersCreated++;
      this.bufferIds.set(buffer, this.nextBufferId++);
      slot = { buffer, size, label, last: bytes.slice() };
      this.scalarSlots.set(key, slot);
      return slot;
    }
    const last = slot.last;
    let same = true;
    for (let i = 0; i < bytes.length && same; i++) same = bytes[i] === last[i];
    if (same) return slot;
    if (this.scalarsInEncoder.has(slot.buffer)) this.flush();
    this.device.queue.writeBuffer(slot.buffer, 0, bytes.buffer, bytes.byteOffset, bytes.length);
    last.set(bytes);
    return slot;
  }

  /**
   * Record one dispatch. `bindings[i]` goes to @binding(i + 1) of @group(0); @binding(0) is the
   * uniform `params` when given. Undefined entries are skipped (an entry point that does not use a
   * binding must not receive it under layout 'auto').
   */
  dispatch(
    k: Kernel,
    bindings: (Binding | undefined)[],
    uniforms: ArrayBuffer | Scalars | undefined,
    workgroups: [number, number?, number?],
  ): void {
    this.throwIfLost();
    const [x, y = 1, z = 1] = workgroups;
    if (x === 0 || y === 0 || z === 0) return;
    const max = this.limits.maxComputeWorkgroupsPerDimension;
    if (x > max || y > max || z > max) throw new RangeError(`${k.name}: workgroups ${x}x${y}x${z} exceed ${max} per dimension`);
    const entries: GPUBindGroupEntry[] = [];
    let key = k.key;
    if (uniforms) {
      const slot = (uniforms as Scalars).buffer !== undefined ? (uniforms as Scalars) : undefined;
      const ub = slot ? slot.buffer : this.uniform(uniforms as ArrayBuffer);
      if (slot) this.scalarsInEncoder.add(ub);
      entries.push({ binding: 0, resource: { buffer: ub } });
      key += `|u${this.bufferIds.get(ub)}@`;
    }
    bindings.forEach((b, i) => {
      if (!b) return;
      const buffer = isView(b) ? b.tensor.buffer : b.buffer;
      if (!isView(b) && !('category' in b)) this.scalarsInEncoder.add(buffer);
      const offset = isView(b) ? b.offset : 0;
      const size = isView(b) ? b.size : b.size;
      entries.push({ binding: i + 1, resource: { buffer, offset, size } });
      key += `|b${this.bufferIds.get(buffer)}@${offset}:${size}`;
    });
    let group = this.bindGroups.get(key);
    if (!group) {
      group = this.device.createBindGroup({ label: `${k.name}.bindgroup`, layout: k.pipeline.getBindGroupLayout(0), entries });
      this.counters.bindGroupsCreated++;
      this.bindGroups.set(key, group);
    }
    if (!this.encoder) this.encoder = this.device.createCommandEncoder({ label: 'runtime.step' });
    if (!this.pass) {
      this.pass = this.encoder.beginComputePass({ label: 'runtime.step.pass' });
      this.counters.passes++;
    }
    this.pass.setPipeline(k.pipeline);
    this.pass.setBindGroup(0, group);
    this.pass.dispatchWorkgroups(x, y, z);
    this.counters.dispatches++;
    this.kernelDispatches.set(k.name, (this.kernelDispatches.get(k.name) ?? 0) + 1);
    if (++this.recorded >= SUBMIT_EVERY) this.flush();
  }

  /** Copy between tensors inside the step's encoder (ends the current compute pass). */
  copy(src: Tensor, srcOffset: number, dst: Tensor, dstOffset: number, size: number): void {
    this.throwIfLost();
    this.endPass();
    if (!this.encoder) this.encoder = this.device.createCommandEncoder({ label: 'runtime.step' });
    this.encoder.copyBufferToBuffer(src.buffer, srcOffset, dst.buffer, dstOffset, size);
  }

  /** Zero a tensor (or a byte range of it) inside the step's encoder. */
  clear(t: Tensor, offset = 0, size = t.size - offset): void {
    this.throwIfLost();
    this.endPass();
    if (!this.encoder) this.encoder = this.device.createCommandEncoder({ label: 'runtime.step' });
    this.encoder.clearBuffer(t.buffer, offset, size);
  }

  private endPass(): void {
    if (this.pass) {
      this.pass.end();
      this.pass = undefined;
    }
  }

  /** Submit everything recorded so far as one command buffer. */
  flush(): void {
    this.endPass();
    if (!this.encoder) return;
    this.device.queue.submit([this.encoder.finish()]);
    this.encoder = undefined;
    this.recorded = 0;
    this.scalarsInEncoder.clear();
    this.counters.submits++;
    // Uniforms that change every step would grow the cache without bound (such values belong in
    // scalars(), which is rewritten in place); past a cap, start over. Destroying after submit is safe: submitted work keeps them.
    if (this.uniforms.size > MAX_CACHED_UNIFORMS) {
      for (const b of this.uniforms.values()) b.destroy();
      this.uniforms.clear();
      this.bindGroups.clear();
    }
  }

  /** Wait for the GPU to finish what was submitted. */
  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    this.throwIfLost();
  }

  /** Throw the first error captured from buffer or pipeline creation since the last check. */
  async check(): Promise<void> {
    const pending = this.pending;
    this.pending = [];
    const errs = (await Promise.all(pending)).filter((e): e is WebtuneError => e !== null);
    if (errs.length) throw errs[0];
    const unc = this.uncaptured.shift();
    if (unc) {
      this.uncaptured = [];
      throw unc;
    }
    this.throwIfLost();
  }

  /** Read bytes back to the CPU. Every call is one readback in the counters: keep them off the hot path. */
  async read(t: Tensor, offset = 0, size = t.size - offset): Promise<ArrayBuffer> {
    await this.check();
    this.endPass();
    // A pooled staging buffer of the next power of two: reads in flight at once each take their own.
    const cap = Math.max(256, 2 ** Math.ceil(Math.log2(size)));
    const pooled = cap <= MAX_POOLED_STAGING;
    let staging = pooled ? this.staging.get(cap)?.pop() : undefined;
    if (!staging) {
      staging = this.device.createBuffer({
        label: pooled ? 'runtime.readback' : `${t.label}.readback`,
        size: pooled ? cap : size,
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      });
      this.counters.buffersCreated++;
    }
    if (!this.encoder) this.encoder = this.device.createCommandEncoder({ label: 'runtime.step' });
    this.encoder.copyBufferToBuffer(t.buffer, offset, staging, 0, size);
    this.flush();
    this.counters.readbacks++;
    this.counters.readbackBytes += size;
    try {
      await staging.mapAsync(GPUMapMode.READ, 0, size);
    } catch (e) {
      this.throwIfLost();
      throw e;
    }
    const out = staging.getMappedRange(0, size).slice(0);
    staging.unmap();
    if (pooled) {
      const free = this.staging.get(cap) ?? [];
      free.push(staging);
      this.staging.set(cap, free);
    } else staging.destroy();
    await this.check();
    return out;
  }

  async readF32(t: Tensor, offset = 0, count?: number): Promise<Float32Array> {
    return new Float32Array(await this.read(t, offset, count === undefined ? undefined : count * 4));
  }

  async readU32(t: Tensor, offset = 0, count?: number): Promise<Uint32Array> {
    return new Uint32Array(await this.read(t, offset, count === undefined ? undefined : count * 4));
  }

  destroy(): void {
    for (const b of this.uniforms.values()) b.destroy();
    this.uniforms.clear();
    for (const s of this.scalarSlots.values()) s.buffer.destroy();
    this.scalarSlots.clear();
    for (const list of this.staging.values()) for (const b of list) b.destroy();
    this.staging.clear();
    this.bindGroups.clear();
    this.device.destroy();
  }
}
