import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { Gpu, grid } from '../gpu/runtime.ts';
import { assertClose, goldenArray, loadGolden, rand, type GoldenTensor } from '../testing/compare.ts';
import { dqAbsmax, doubleQuantWords, packWords, quantizeNF4 } from '../quant/nf4.ts';
import shader from '../../shaders/matvec_nf4.wgsl?raw';
import { matvecNf4, matvecNf4Launch } from './matvec_nf4.ts';
import { matvecNf4Ref } from './matvec_nf4.ref.ts';
import { matmulNf4, matmulNf4Tiled } from './matmul_nf4.ts';
import { reductionKernel } from './subgroups.ts';
import { devicesPerPath, expectPresumPaths, REDUCTION_PATHS } from '../testing/gpu-paths.ts';

// Weights in [-0.2, 0.2) and x in [-1, 1): |y| stays near 1, and K is at most a few hundred.
const TOL = { atol: 1e-5, rtol: 1e-4 };
const golden = loadGolden('nf4');
const bytes = (t: GoldenTensor | number) => Uint8Array.from((t as GoldenTensor).data);

describe('matvec_nf4 twin', () => {
  // The torch goldens of the NF4 family: linear(X, dequantize_4bit(W), bias) from bitsandbytes-packed
  // codes. The twin takes any M; the kernel is only ever given 1 to 4 rows.
  test.each(['mm_small', 'mm_ragged'])('matches torch linear(X, dequantize_4bit(W), b): %s', (name) => {
    const c = golden[name];
    const M = c.M as number, N = c.N as number, K = c.K as number;
    const y = new Float32Array(M * N);
    matvecNf4Ref(y, goldenArray(c.x), packWords(bytes(c.packed), N * K), goldenArray(c.absmax), goldenArray(c.bias), M, N, K);
    assertClose(`${name}.y`, y, goldenArray(c.y), TOL);
  });
});

function weights(N: number, K: number, blocksize: number): { Wq: Uint32Array; absmax: Float32Array } {
  const { packed, absmax } = quantizeNF4(rand(N * K, N * K, -0.2, 0.2), blocksize);
  return { Wq: packWords(packed, N * K), absmax };
}

// One device per reduction path (the subgroup pre-sum and the portable lane-by-lane sum); the
// routing tests use the device as acquired.
let gpu: Gpu;
beforeAll(async () => {
  gpu = await Gpu.create();
});
afterAll(() => gpu?.destroy());
const onPath = devicesPerPath();

describe.each(REDUCTION_PATHS)('matvec_nf4 kernel (%s path)', (path) => {
  let gpu: Gpu;
  beforeAll(() => {
    gpu = onPath[path];
  });

  // Scalar entry: K ragged against 32 and 64 (blocks cross rows, rows start mid-word), an odd N·K
  // (padded last nibble). vec4 entry: K % 64 == 0; K = 96 (64-blocks cross rows, each 32-code chunk
  // lies in one); K = 1280 (more chunks than the 64 lanes); blocksizes 32 and 128. Between them 8,
  // 16, 32 and 64 lanes per column group; N ragged against the columns of a workgroup; M = 1..4;
  // accumulate and bias. Each override set compiles a pipeline (about a second on SwiftShader), so
  // cases share flags where they can.
  test.each([
    [1, 1, 1, false, false, 64],
    [1, 7, 100, false, true, 64],
    [3, 65, 67, true, true, 64],
    [2, 5, 9, true, true, 64],
    [2, 9, 64, false, false, 64],
    [4, 33, 96, true, true, 64],
    [3, 17, 1280, true, true, 64],
    [2, 17, 640, true, true, 32],
    [1, 10, 512, true, true, 128],
  ])('equals its twin at M=%i N=%i K=%i accumulate=%s bias=%s blocksize=%i', async (M, N, K, accumulate, hasBias, blocksize) => {
    const { Wq, absmax } = weights(N, K, blocksize);
    const X = rand(M * K, M + K, -1, 1);
    const bias = hasBias ? rand(N, 3 * N, -1, 1) : undefined;
    const y0 = rand(M * N, M * N + 1, -1, 1);
    const yT = gpu.tensor('y', 'activations', y0);
    matvecNf4(
      gpu, yT, gpu.tensor('x', 'activations', X), gpu.tensor('wq', 'weights', Wq), gpu.tensor('absmax', 'weights', absmax),
      bias && gpu.tensor('bias', 'weights', bias), M, N, K, { accumulate, blocksize },
    );
    const y = y0.slice();
    matvecNf4Ref(y, X, Wq, absmax, bias, M, N, K, { accumulate, blocksize });
    assertClose('y', await gpu.readF32(yT), y, TOL);
  });

  // DQ through both entry points (scalar: K ragged; vec4: K % 64 == 0, 1280 = more chunks than
  // lanes; blocksize 32): against the twin, and bit for bit against the kernel fed decoded f32 absmax.
  test.each([
    [3, 65, 67, true, true, 64],
    [4, 33, 96, false, true, 64],
    [3, 17, 1280, true, false, 64],
    [2, 17, 640, true, true, 32],
  ])('double-quantized absmax at M=%i N=%i K=%i accumulate=%s bias=%s blocksize=%i', async (M, N, K, accumulate, hasBias, blocksize) => {
    const { Wq, absmax } = weights(N, K, blocksize);
    const dq = doubleQuantWords(absmax);
    const X = rand(M * K, M + K, -1, 1);
    const bias = hasBias ? rand(N, 3 * N, -1, 1) : undefined;
    const y0 = rand(M * N, M * N + 1, -1, 1);
    const yT = gpu.tensor('y', 'activations', y0), yPlain = gpu.tensor('y.plain', 'activations', y0);
    const xT = gpu.tensor('x', 'activations', X), wT = gpu.tensor('wq', 'weights', Wq), bT = bias && gpu.tensor('bias', 'weights', bias);
    matvecNf4(gpu, yT, xT, wT, gpu.tensor('absmax.dq', 'weights', dq), bT, M, N, K, { accumulate, blocksize, doubleQuant: true });
    const f32Absmax = gpu.tensor('absmax', 'weights', dqAbsmax(dq, Math.ceil((N * K) / blocksize)));
    matvecNf4(gpu, yPlain, xT, wT, f32Absmax, bT, M, N, K, { accumulate, blocksize });
    const y = y0.slice();
    matvecNf4Ref(y, X, Wq, dq, bias, M, N, K, { accumulate, blocksize, doubleQuant: true });
    const got = await gpu.readF32(yT);
    assertClose('y', got, y, TOL);
    expect(got).toEqual(await gpu.readF32(yPlain));
  });

  test('both entry points: vec4 codes for K % 32 == 0 and blocksize % 32 == 0, scalar otherwise', () => {
    expect(matvecNf4Launch(1, 8, 2048, false).entry).toBe('main');
    expect(matvecNf4Launch(1, 2048, 2048, false)).toMatchObject({ overrides: { WG_K: 64, GROUPS: 4 }, workgroups: 256 });
    expect(matvecNf4Launch(1, 2048, 64, false)).toMatchObject({ overrides: { WG_K: 8, GROUPS: 32 }, workgroups: 32 });
    expect(matvecNf4Launch(1, 8, 96, false, { blocksize: 32 }).entry).toBe('main');
    expect(matvecNf4Launch(1, 8, 100, false).entry).toBe('main_scalar');
    expect(matvecNf4Launch(1, 8, 64, false, { blocksize: 16 }).entry).toBe('main_scalar');
    expect(matvecNf4Launch(1, 8, 0, false).entry).toBe('main_scalar');
  });

  test('reproduces the torch golden end to end (golden packed weights, bias, M = 3)', async () => {
    const c = golden.mm_ragged;
    const M = c.M as number, N = c.N as number, K = c.K as number;
    const yT = gpu.tensor('y', 'activations', M * N * 4);
    matvecNf4(
      gpu, yT, gpu.tensor('x', 'activations', goldenArray(c.x)), gpu.tensor('wq', 'weights', packWords(bytes(c.packed), N * K)),
      gpu.tensor('absmax', 'weights', goldenArray(c.absmax)), gpu.tensor('bias', 'weights', goldenArray(c.bias)), M, N, K,
    );
    assertClose('mm_ragged.y', await gpu.readF32(yT), goldenArray(c.y), TOL);
  });

  test('a grid split over x and y (linear id rebuilt, overhanging workgroups idle)', async () => {
    // The per-dimension cap of 4 stands in for 65535: 10 workgroups become a 4x3 grid, 2 dead.
    for (const K of [64, 40]) {
      const M = 1, N = 10 * matvecNf4Launch(1, 1, K, false).columns - 5;
      const { Wq, absmax } = weights(N, K, 64);
      const X = rand(M * K, 7);
      const yT = gpu.tensor('y', 'activations', M * N * 4), xT = gpu.tensor('x', 'activations', X);
      const wT = gpu.tensor('wq', 'weights', Wq), aT = gpu.tensor('absmax', 'weights', absmax);
      const { entry, overrides, uniform, workgroups } = matvecNf4Launch(M, N, K, false);
      expect(workgroups).toBe(10);
      expect(grid(workgroups, 4)).toEqual([4, 3]);
      gpu.dispatch(reductionKernel(gpu, 'matvec_nf4', shader, { entry, overrides }), [yT, xT, wT, aT, aT], uniform, grid(workgroups, 4));
      const y = new Float32Array(M * N);
      matvecNf4Ref(y, X, Wq, absmax, undefined, M, N, K);
      assertClose(`y (K=${K}, ${entry})`, await gpu.readF32(yT), y, TOL);
    }
  });

  test('refuses M outside 1..4 and Y aliasing an input', () => {
    const t = gpu.tensor('x', 'activations', 64), w = gpu.tensor('w', 'weights', 64);
    expect(() => matvecNf4(gpu, t, t, w, w, undefined, 1, 2, 2)).toThrow(/must not share a buffer/);
    expect(() => matvecNf4(gpu, gpu.tensor('y', 'activations', 64), t, w, w, undefined, 0, 2, 2)).toThrow(/expected 1 to 4 rows/);
  });
});

describe('matvec_nf4 reduction paths', () => {
  // As in matvec.test.ts: SG_REDUCE = false takes the branch of a device whose subgroups do not
  // tile the workgroup. vec4 entry (K = 1280, 40 chunks: 64 lanes) and scalar (K = 203).
  test.each([1280, 203])('K=%i: the fallback equals the workgroup path bit for bit; the pre-sum runs here', async (K) => {
    const M = 4, N = 37;
    const { Wq, absmax } = weights(N, K, 64);
    const X = rand(M * K, K, -1, 1), bias = rand(N, 2 * K, -1, 1);
    const run = async (g: Gpu, extra: Record<string, boolean>) => {
      const yT = g.tensor('y', 'activations', M * N * 4), xT = g.tensor('x', 'activations', X);
      const wT = g.tensor('wq', 'weights', Wq), aT = g.tensor('absmax', 'weights', absmax), bT = g.tensor('bias', 'weights', bias);
      const { entry, overrides, uniform, workgroups } = matvecNf4Launch(M, N, K, true);
      g.dispatch(reductionKernel(g, 'matvec_nf4', shader, { entry, overrides: { ...overrides, ...extra } }), [yT, xT, wT, aT, bT], uniform, grid(workgroups));
      return g.readF32(yT);
    };
    const y = new Float32Array(M * N);
    matvecNf4Ref(y, X, Wq, absmax, bias, M, N, K);
    await expectPresumPaths(onPath, run, y, TOL);
  });
});

describe('matmulNf4 routes M <= 4 to matvec_nf4', () => {
  test.each([
    [1, 37, 64, false, false],
    [1, 37, 67, true, true],
    [4, 70, 128, true, true],
    [5, 12, 64, true, true],
  ])('M=%i N=%i K=%i accumulate=%s bias=%s: the kernel matmulNf4 records, same result as the tile', async (M, N, K, accumulate, hasBias) => {
    const { Wq, absmax } = weights(N, K, 64);
    const X = rand(M * K, K, -1, 1), y0 = rand(M * N, N, -1, 1);
    const xT = gpu.tensor('x', 'activations', X), wT = gpu.tensor('wq', 'weights', Wq), aT = gpu.tensor('absmax', 'weights', absmax);
    const bT = hasBias ? gpu.tensor('bias', 'weights', rand(N, 5, -1, 1)) : undefined;
    const routed = gpu.tensor('y.routed', 'activations', y0), tiled = gpu.tensor('y.tiled', 'activations', y0);
    const spy = vi.spyOn(gpu, 'kernel');
    matmulNf4(gpu, routed, xT, wT, aT, bT, M, N, K, { accumulate });
    const names = spy.mock.calls.map((call) => call[0].replace(/\+subgroups$/, ''));
    spy.mockRestore();
    matmulNf4Tiled(gpu, tiled, xT, wT, aT, bT, M, N, K, { accumulate });
    expect(names).toEqual([M <= 4 ? 'matvec_nf4' : 'matmul_nf4']);
    assertClose('matmulNf4 vs tiled', await gpu.readF32(routed), await gpu.readF32(tiled), TOL);
  });
});
