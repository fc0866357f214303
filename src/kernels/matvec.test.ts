import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { Gpu, grid } from '../gpu/runtime.ts';
import { assertClose, goldenArray, loadGolden, rand } from '../testing/compare.ts';
import shader from '../../shaders/matvec.wgsl?raw';
import { matvec, matvecLanes, matvecLaunch } from './matvec.ts';
import { matvecRef, type MatvecOptions } from './matvec.ref.ts';
import { matmul, matmulTiled } from './matmul.ts';
import type { MatmulOptions } from './matmul.ref.ts';
import { reductionKernel } from './subgroups.ts';
import { devicesPerPath, expectPresumPaths, REDUCTION_PATHS } from '../testing/gpu-paths.ts';

// The GPU sums K products in f32 (per lane, then across lanes), the twin in f64: the gap grows with K and
// with the operands' magnitude (inputs in [-1, 1), so |y| <= K).
const tolFor = (K: number) => ({ atol: 2e-6 * Math.max(1, Math.sqrt(K)), rtol: 1e-5 });

describe('matvec twin', () => {
  // The torch goldens of the matmul family: nn.Linear's layout is their NT case. The twin takes any
  // M; the kernel is only ever given 1 to 4 rows.
  const golden = loadGolden('matmul');
  const TOL = { atol: 1e-5, rtol: 1e-5 };

  test.each(['tiny', 'ragged', 'aligned'])('matches torch.matmul(a, b.T): %s', (name) => {
    const g = golden[name];
    const M = g.M as number, N = g.N as number, K = g.K as number;
    const y = new Float32Array(M * N);
    matvecRef(y, goldenArray(g.a), goldenArray(g.b), M, N, K);
    assertClose(`${name}.c_nt`, y, goldenArray(g.c_nt), TOL);
  });

  test('matches torch.addmm (accumulate, alpha)', () => {
    const g = golden.addmm_nt;
    const M = g.M as number, N = g.N as number, K = g.K as number;
    const y = goldenArray(g.c0);
    matvecRef(y, goldenArray(g.a), goldenArray(g.b), M, N, K, { accumulate: true, alpha: g.alpha as number });
    assertClose('addmm_nt.c', y, goldenArray(g.c), TOL);
  });
});

// One device per reduction path (the subgroup pre-sum and the portable lane-by-lane sum); the
// routing tests use the device as acquired.
let gpu: Gpu;
beforeAll(async () => {
  gpu = await Gpu.create();
});
afterAll(() => gpu?.destroy());
const onPath = devicesPerPath();

describe.each(REDUCTION_PATHS)('matvec kernel (%s path)', (path) => {
  let gpu: Gpu;
  beforeAll(() => {
    gpu = onPath[path];
  });

  async function check(M: number, N: number, K: number, opts: MatvecOptions, seed: number): Promise<void> {
    const x = rand(M * K, seed), W = rand(N * K, seed + 1);
    const y0 = rand(M * N, seed + 2); // garbage unless accumulating: must be overwritten
    const yT = gpu.tensor('y', 'activations', y0);
    matvec(gpu, yT, gpu.tensor('x', 'activations', x), gpu.tensor('W', 'weights', W), M, N, K, opts);
    const y = y0.slice();
    matvecRef(y, x, W, M, N, K, opts);
    assertClose('y', await gpu.readF32(yT), y, tolFor(K));
  }

  // One element; K ragged against 4 (scalar entry) and N against the columns of a workgroup;
  // K % 4 == 0 (vec4 entry) with more vec4 than the 64 lanes (the K walk wraps); a longer K. Lanes
  // per column group run through 8, 16 and 64 here and 32 in the routing tests (K = 100).
  const SHAPES: [number, number, number][] = [
    [1, 1, 1], [1, 9, 5], [2, 17, 64], [3, 33, 130], [4, 70, 260], [4, 12, 1003], [1, 23, 1024],
  ];
  test.each(SHAPES)('equals its twin at M=%i N=%i K=%i', async (M, N, K) => {
    await check(M, N, K, {}, M * 7 + N * 3 + K);
  });

  test.each([
    [1, 10, 36],
    [4, 19, 37],
  ])('accumulates with alpha at M=%i N=%i K=%i', async (M, N, K) => {
    await check(M, N, K, { accumulate: true, alpha: -0.5 }, 99 + K);
  });

  test('scales by alpha without accumulating', async () => {
    await check(2, 15, 48, { alpha: 0.125 }, 5);
  });

  test('K = 0 writes alpha * 0, and with accumulate leaves y alone', async () => {
    await check(3, 5, 0, {}, 11);
    await check(3, 5, 0, { accumulate: true }, 12);
  });

  test('both entry points (vec4 for K % 4 == 0), and lanes sized to the row', () => {
    const t = () => gpu.tensor('t', 'scratch', 16);
    const at = (K: number) => {
      const l = matvecLaunch(t(), t(), t(), 1, 2048, K);
      return [l.entry, l.overrides.WG_K, l.overrides.GROUPS, l.workgroups];
    };
    expect(at(2048)).toEqual(['main', 64, 4, 256]);
    expect(at(64)).toEqual(['main', 16, 16, 64]);
    expect(at(66)).toEqual(['main_scalar', 64, 4, 256]);
    expect(at(0)).toEqual(['main_scalar', 8, 32, 32]);
    expect([1, 8, 9, 16, 17, 33, 64, 1000].map(matvecLanes)).toEqual([8, 8, 16, 16, 32, 64, 64, 64]);
  });

  test('a grid split over x and y (linear id rebuilt, overhanging workgroups idle)', async () => {
    // A real split needs > 65535 workgroups (N > 524k), far too slow here; the same code path runs
    // when the per-dimension cap is 4: 10 workgroups become a 4x3 grid with 2 dead workgroups.
    for (const K of [40, 41]) {
      const M = 2, N = 10 * matvecLaunch(gpu.tensor('y', 'scratch', 4), gpu.tensor('x', 'scratch', 4), gpu.tensor('W', 'scratch', 4), 1, 1, K).columns - 3;
      const x = rand(M * K, 31), W = rand(N * K, 32);
      const yT = gpu.tensor('y', 'activations', M * N * 4), xT = gpu.tensor('x', 'activations', x), wT = gpu.tensor('W', 'weights', W);
      const { entry, overrides, uniform, workgroups } = matvecLaunch(yT, xT, wT, M, N, K);
      expect(workgroups).toBe(10);
      expect(grid(workgroups, 4)).toEqual([4, 3]);
      gpu.dispatch(reductionKernel(gpu, 'matvec', shader, { entry, overrides }), [yT, xT, wT], uniform, grid(workgroups, 4));
      const y = new Float32Array(M * N);
      matvecRef(y, x, W, M, N, K);
      assertClose(`y (K=${K}, ${entry})`, await gpu.readF32(yT), y, tolFor(K));
    }
  });

  test('refuses M outside 1..4 and y aliasing an input', () => {
    const t = gpu.tensor('x', 'activations', 64), w = gpu.tensor('w', 'weights', 64);
    expect(() => matvec(gpu, t, t, w, 1, 2, 2)).toThrow(/must not share a buffer/);
    expect(() => matvec(gpu, gpu.tensor('y', 'activations', 64), t, w, 5, 2, 2)).toThrow(/expected 1 to 4 rows/);
  });
});

describe('matvec reduction paths', () => {
  // The subgroup path numbers lanes by (subgroup, lane) and pre-sums each subgroup; where a device's
  // subgroups do not tile the workgroup it keeps the portable numbering and sum (SG_REDUCE = false
  // takes that branch here). Both vec4 (K = 1024: 64 lanes) and scalar (K = 203: 64 lanes) entries.
  test.each([1024, 203])('K=%i: the fallback equals the workgroup path bit for bit; the pre-sum runs here', async (K) => {
    const M = 3, N = 41;
    const x = rand(M * K, K), W = rand(N * K, K + 1);
    const run = async (g: Gpu, extra: Record<string, boolean>) => {
      const yT = g.tensor('y', 'activations', M * N * 4), xT = g.tensor('x', 'activations', x), wT = g.tensor('W', 'weights', W);
      const { entry, overrides, uniform, workgroups } = matvecLaunch(yT, xT, wT, M, N, K);
      g.dispatch(reductionKernel(g, 'matvec', shader, { entry, overrides: { ...overrides, ...extra } }), [yT, xT, wT], uniform, grid(workgroups));
      return g.readF32(yT);
    };
    const y = new Float32Array(M * N);
    matvecRef(y, x, W, M, N, K);
    await expectPresumPaths(onPath, run, y, tolFor(K));
  });
});

describe('matmul routes matrix-vector products to matvec', () => {
  /** Run matmul() and the tiled kernel on the same inputs; return the kernel names matmul() recorded. */
  async function compare(M: number, N: number, K: number, opts: MatmulOptions, seed: number): Promise<string[]> {
    const batch = opts.batch ?? 1;
    const sa = opts.strideA ?? M * K, sb = opts.strideB ?? K * N, sc = opts.strideC ?? M * N;
    const a = rand((batch - 1) * sa + M * K, seed), b = rand((batch - 1) * sb + N * K, seed + 1);
    const c0 = rand((batch - 1) * sc + M * N, seed + 2);
    const aT = gpu.tensor('a', 'activations', a), bT = gpu.tensor('b', 'weights', b);
    const routed = gpu.tensor('c.routed', 'activations', c0), tiled = gpu.tensor('c.tiled', 'activations', c0);
    const spy = vi.spyOn(gpu, 'kernel');
    matmul(gpu, routed, aT, bT, M, N, K, opts);
    // Kernels with a subgroup path are named with it ('matvec+subgroups'): the name alone is checked.
    const names = spy.mock.calls.map((call) => call[0].replace(/\+subgroups$/, ''));
    spy.mockRestore();
    matmulTiled(gpu, tiled, aT, bT, M, N, K, opts);
    assertClose('matmul vs tiled', await gpu.readF32(routed), await gpu.readF32(tiled), tolFor(K));
    return names;
  }

  test.each([
    [1, 37, 64, {}],
    [1, 37, 67, { accumulate: true, alpha: 0.5 }],
    [4, 70, 100, { accumulate: true }],
    [3, 9, 33, { alpha: -2 }],
  ] as [number, number, number, MatmulOptions][])('M=%i N=%i K=%i %o, transB: matvec, same result as the tile', async (M, N, K, o) => {
    expect(await compare(M, N, K, { ...o, transB: true }, M + N + K)).toEqual(['matvec']);
  });

  test('the tile keeps M > 4, NN, TN and batched products', async () => {
    expect(await compare(5, 20, 30, { transB: true }, 1)).toEqual(['matmul']);
    expect(await compare(1, 20, 30, {}, 2)).toEqual(['matmul']);
    expect(await compare(1, 20, 30, { transA: true, transB: true }, 3)).toEqual(['matmul']);
    expect(await compare(1, 6, 8, { transB: true, batch: 2, strideA: 0, strideC: 6 }, 4)).toEqual(['matmul']);
  });
});
