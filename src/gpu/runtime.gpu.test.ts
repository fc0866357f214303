import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Gpu, grid, params } from './runtime.ts';
import { selfTest } from '../app/selftest.ts';
import { DeviceLostError, GpuOutOfMemoryError, ShaderCompileError } from '../errors.ts';

const COPY = `
struct Params { n: u32, scale: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
override WG: u32 = 64;
@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i < p.n) { y[i] = x[i] * p.scale; }
}`;

describe('Gpu runtime', () => {
  let gpu: Gpu;
  beforeAll(async () => {
    gpu = await Gpu.create();
  });
  afterAll(() => gpu?.destroy());

  test('finds an adapter and gets its maximum limits, not the spec defaults', () => {
    expect(gpu.adapterInfo).toBeDefined();
    for (const [name, v] of Object.entries(gpu.requestedLimits)) {
      expect((gpu.limits as unknown as Record<string, number>)[name], name).toBe(v);
    }
    // SwiftShader and every real desktop GPU offer more than the 128 MiB default binding.
    expect(gpu.limits.maxStorageBufferBindingSize).toBeGreaterThan(128 * 1024 * 1024);
    expect(typeof gpu.features.f16).toBe('boolean');
  });

  test('dispatches, reads back and counts both', async () => {
    const n = 1000;
    const x = Float32Array.from({ length: n }, (_, i) => i);
    const xT = gpu.tensor('x', 'activations', x);
    const yT = gpu.tensor('y', 'scratch', n * 4);
    const k = gpu.kernel('copy_test', COPY, { overrides: { WG: 64 } });
    const d0 = gpu.counters.dispatches, r0 = gpu.counters.readbacks;
    gpu.dispatch(k, [yT, xT], params([n], [0.5]), grid(Math.ceil(n / 64)));
    gpu.dispatch(k, [yT, xT], params([n], [2]), grid(Math.ceil(n / 64)));
    const y = await gpu.readF32(yT);
    expect(y[999]).toBe(1998);
    expect(gpu.counters.dispatches - d0).toBe(2);
    expect(gpu.counters.readbacks - r0).toBe(1);
  });

  test('scalars: each dispatch sees the values written before it was recorded; no new bind group or buffer', async () => {
    const n = 256;
    const xT = gpu.tensor('x', 'activations', new Float32Array(n).fill(1));
    const y1 = gpu.tensor('y1', 'scratch', n * 4), y2 = gpu.tensor('y2', 'scratch', n * 4);
    const k = gpu.kernel('copy_test', COPY, { overrides: { WG: 64 } });
    const run = async (s1: number, s2: number) => {
      // Two values in one slot within one recording: the second write must not reach the first dispatch.
      gpu.dispatch(k, [y1, xT], gpu.scalars('test.params', params([n], [s1])), grid(n / 64));
      gpu.dispatch(k, [y2, xT], gpu.scalars('test.params', params([n], [s2])), grid(n / 64));
      return [(await gpu.readF32(y1))[n - 1], (await gpu.readF32(y2))[n - 1]];
    };
    expect(await run(3, 5)).toEqual([3, 5]);
    const c0 = { ...gpu.counters };
    expect(await run(7, 11)).toEqual([7, 11]);
    // Same buffers, same bind groups; the staging buffers of the readbacks are reused too.
    expect(gpu.counters.bindGroupsCreated - c0.bindGroupsCreated).toBe(0);
    expect(gpu.counters.buffersCreated - c0.buffersCreated).toBe(0);
    expect(gpu.counters.readbackBytes - c0.readbackBytes).toBe(2 * n * 4);
    for (const t of [xT, y1, y2]) gpu.free(t);
  });

  test('concurrent readbacks each get their own staging buffer', async () => {
    const a = gpu.tensor('a', 'scratch', Float32Array.of(1, 2, 3, 4));
    const b = gpu.tensor('b', 'scratch', Float32Array.of(5, 6, 7, 8));
    const [ra, rb] = await Promise.all([gpu.readF32(a), gpu.readF32(b)]);
    expect(Array.from(ra)).toEqual([1, 2, 3, 4]);
    expect(Array.from(rb)).toEqual([5, 6, 7, 8]);
    gpu.free(a);
    gpu.free(b);
  });

  test('caches pipelines by kernel and override constants', () => {
    const a = gpu.kernel('copy_test', COPY, { overrides: { WG: 64 } });
    const b = gpu.kernel('copy_test', COPY, { overrides: { WG: 64 } });
    const c = gpu.kernel('copy_test', COPY, { overrides: { WG: 128 } });
    expect(a).toBe(b);
    expect(c).not.toBe(a);
  });

  test('counts bytes by category and the peak', () => {
    const before = { ...gpu.bytes };
    const t = gpu.tensor('lora.A', 'lora', 1000); // rounded up to a multiple of 4
    expect(gpu.bytes.lora - before.lora).toBe(1000);
    const u = gpu.tensor('odd', 'optimizer', 10);
    expect(u.size).toBe(12);
    expect(gpu.peakBytes).toBeGreaterThanOrEqual(gpu.allocatedBytes);
    gpu.free(t);
    gpu.free(u);
    expect(gpu.bytes.lora).toBe(before.lora);
    expect(gpu.bytes.optimizer).toBe(before.optimizer);
  });

  test('a WGSL error becomes a ShaderCompileError naming the kernel and line', async () => {
    gpu.kernel('broken_kernel', '@compute @workgroup_size(1) fn main() { let x: u32 = 1.5; }');
    const err = await gpu.check().then(() => null, (e) => e);
    expect(err).toBeInstanceOf(ShaderCompileError);
    expect(err.message).toContain('broken_kernel');
    expect(err.details.messages.join('\n')).toMatch(/broken_kernel\.wgsl:1:/);
  });

  test('an included snippet leaves the shader\'s line numbers in compiler messages', async () => {
    // nf4_tables is 40-odd lines: inlined at line 1, the error on line 3 would be reported past 40.
    gpu.kernel('broken_include', '//#include nf4_tables\n\n@compute @workgroup_size(1) fn main() { let x: u32 = 1.5; }');
    const err = await gpu.check().then(() => null, (e) => e);
    expect(err).toBeInstanceOf(ShaderCompileError);
    expect(err.details.messages.join('\n')).toMatch(/^broken_include\.wgsl:3:/m);
  });

  test('an unknown include throws at gpu.kernel, naming the shader and the include', () => {
    expect(() => gpu.kernel('bad_include', '//#include no_such_snippet\n@compute @workgroup_size(1) fn main() {}'))
      .toThrow(/bad_include\.wgsl:1: \/\/#include no_such_snippet: no shaders\/lib\/no_such_snippet\.wgsl/);
  });

  test('a buffer over the device limit is a GpuOutOfMemoryError with sizes', () => {
    let err: unknown;
    try {
      gpu.tensor('huge', 'weights', gpu.limits.maxBufferSize + 4);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(GpuOutOfMemoryError);
    expect((err as Error).message).toMatch(/Could not allocate .* for "huge" \(over the device's .* per-buffer limit\)/);
  });

  test('the self-test passes in Node', async () => {
    const r = await selfTest(gpu);
    expect(r.ok).toBe(true);
    expect(r.maxAbsError).toBeLessThan(1e-4);
  });
});

describe('device loss', () => {
  test('destroying the device resolves `lost` and later work throws DeviceLostError', async () => {
    const gpu = await Gpu.create();
    gpu.device.destroy();
    const lost = await gpu.lost;
    expect(lost).toBeInstanceOf(DeviceLostError);
    expect(lost.details.reason).toBe('destroyed');
    expect(() => gpu.tensor('after', 'scratch', 16)).toThrow(DeviceLostError);
  });
});
