import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Gpu, grid } from '../gpu/runtime.ts';
import { assertClose, goldenArray, loadGolden, rand } from '../testing/compare.ts';
import shader from '../../shaders/matmul.wgsl?raw';
import { matmul, matmulLaunch, matmulSplit, matmulSplitBytes, matmulTiled } from './matmul.ts';
import { matmulRef, type MatmulOptions } from './matmul.ref.ts';

// The GPU sums K products in f32, the twin in f64: the gap grows with K and with the operands'
// magnitude (inputs here are in [-1, 1), so |c| <= K).
const tolFor = (K: number) => ({ atol: 2e-6 * Math.max(1, Math.sqrt(K)), rtol: 1e-5 });
const VARIANTS: [boolean, boolean][] = [[false, false], [false, true], [true, false], [true, true]];

describe('matmul twin', () => {
  const golden = loadGolden('matmul');
  const TOL = { atol: 1e-5, rtol: 1e-5 };

  test.each(['tiny', 'ragged', 'aligned'])('matches torch.matmul, all four layouts: %s', (name) => {
    const g = golden[name];
    const M = g.M as number, N = g.N as number, K = g.K as number;
    for (const [transA, transB] of VARIANTS) {
      const key = `c_${transA ? 't' : 'n'}${transB ? 't' : 'n'}`;
      const c = new Float32Array(M * N);
      matmulRef(c, goldenArray(g.a), goldenArray(g.b), M, N, K, { transA, transB });
      assertClose(`${name}.${key}`, c, goldenArray(g[key], key), TOL);
    }
  });

  test('matches torch.addmm (accumulate, alpha, NT)', () => {
    const g = golden.addmm_nt;
    const M = g.M as number, N = g.N as number, K = g.K as number;
    const c = goldenArray(g.c0);
    matmulRef(c, goldenArray(g.a), goldenArray(g.b), M, N, K, { transB: true, accumulate: true, alpha: g.alpha as number });
    assertClose('addmm_nt.c', c, goldenArray(g.c), TOL);
  });

  test('matches torch.bmm (batched NN)', () => {
    const g = golden.bmm_nn;
    const M = g.M as number, N = g.N as number, K = g.K as number, batch = g.batch as number;
    const c = new Float32Array(batch * M * N);
    matmulRef(c, goldenArray(g.a), goldenArray(g.b), M, N, K, { batch });
    assertClose('bmm_nn.c', c, goldenArray(g.c), TOL);
  });
});

describe('matmul kernel', () => {
  let gpu: Gpu;
  beforeAll(async () => {
    gpu = await Gpu.create();
  });
  afterAll(() => gpu?.destroy());

  async function check(M: number, N: number, K: number, opts: MatmulOptions, seed: number): Promise<void> {
    const batch = opts.batch ?? 1;
    const sa = opts.strideA ?? M * K, sb = opts.strideB ?? K * N, sc = opts.strideC ?? M * N;
    const a = rand((batch - 1) * sa + M * K, seed), b = rand((batch - 1) * sb + K * N, seed + 1);
    const c0 = rand((batch - 1) * sc + M * N, seed + 2); // garbage unless accumulating: must be overwritten
    const cT = gpu.tensor('c', 'activations', c0);
    matmul(gpu, cT, gpu.tensor('a', 'activations', a), gpu.tensor('b', 'weights', b), M, N, K, opts);
    const c = c0.slice();
    matmulRef(c, a, b, M, N, K, opts);
    assertClose('c', await gpu.readF32(cT), c, tolFor(K));
  }

  // 1x1x1; ragged against the 64x64x16 tile in every dimension; one output column with two K tiles
  // plus a ragged one; exactly one tile; several tiles in both directions.
  const SHAPES: [number, number, number][] = [[1, 1, 1], [37, 53, 29], [65, 1, 130], [64, 64, 64], [130, 67, 33]];
  for (const [transA, transB] of VARIANTS) {
    test.each(SHAPES)(`equals its twin, transA=${transA} transB=${transB}, M=%i N=%i K=%i`, async (M, N, K) => {
      await check(M, N, K, { transA, transB }, M * 7 + N * 3 + K);
    });
  }

  test.each(VARIANTS)('accumulates with alpha, transA=%s transB=%s', async (transA, transB) => {
    await check(45, 70, 19, { transA, transB, accumulate: true, alpha: -0.5 }, 99);
  });

  test('scales by alpha without accumulating', async () => {
    await check(17, 9, 66, { alpha: 0.125 }, 5);
  });

  test('K = 0 writes alpha * 0, and with accumulate leaves c alone', async () => {
    await check(3, 5, 0, {}, 11);
    await check(3, 5, 0, { accumulate: true }, 12);
  });

  test('batched with padded strides and a broadcast b', async () => {
    // strideB 0 shares one weight over the batch, as a per-head projection would.
    await check(19, 21, 7, { batch: 3, strideA: 19 * 7 + 5, strideB: 0, strideC: 19 * 21 + 3, transB: true }, 21);
  });

  test('a grid split over x and y (linear id rebuilt, overhanging workgroups idle)', async () => {
    // A real split needs > 65535 workgroups, far too slow here; the same code path runs when the
    // per-dimension cap is 4: 10 tiles become a 4x3 grid with 2 dead workgroups.
    const M = 70, N = 10, K = 9, batch = 5;
    const opts: MatmulOptions = { batch, transA: true };
    const a = rand(batch * M * K, 31), b = rand(batch * K * N, 32), c0 = rand(batch * M * N, 33);
    const cT = gpu.tensor('c', 'activations', c0), aT = gpu.tensor('a', 'activations', a), bT = gpu.tensor('b', 'weights', b);
    const { overrides, uniform, workgroups } = matmulLaunch('matmul', cT, aT, bT, M, N, K, opts);
    expect(workgroups).toBe(10);
    expect(grid(workgroups, 4)).toEqual([4, 3]);
    const k = gpu.kernel('matmul', shader, { overrides });
    gpu.dispatch(k, [cT, aT, bT], uniform, grid(workgroups, 4));
    const c = new Float32Array(batch * M * N);
    matmulRef(c, a, b, M, N, K, opts);
    assertClose('c', await gpu.readF32(cT), c, tolFor(K));
  });

  // Split-K: slices of K into scratch, then their sum. Ragged M and N against the tile, K ragged
  // against the slice and the 16-deep step (1000 = slices of 336, 336, 328), every layout, with
  // accumulate and alpha: against the twin, and against the unsplit kernel within the f32 gap.
  test.each(VARIANTS)('split-K equals its twin and the unsplit product, transA=%s transB=%s', async (transA, transB) => {
    const M = 37, N = 70, K = 1000;
    expect(matmulSplit(M, N, K)).toEqual({ slices: 3, chunk: 336 });
    const opts: MatmulOptions = { transA, transB, accumulate: true, alpha: -0.75 };
    const a = rand(M * K, 41), b = rand(K * N, 42), c0 = rand(M * N, 43);
    const aT = gpu.tensor('a', 'activations', a), bT = gpu.tensor('b', 'weights', b);
    const cT = gpu.tensor('c', 'activations', c0), plainT = gpu.tensor('c.plain', 'activations', c0);
    const scratch = gpu.tensor('split', 'scratch', matmulSplitBytes(M, N, K));
    matmulTiled(gpu, cT, aT, bT, M, N, K, { ...opts, splitK: scratch });
    matmulTiled(gpu, plainT, aT, bT, M, N, K, opts);
    const c = c0.slice();
    matmulRef(c, a, b, M, N, K, opts);
    const got = await gpu.readF32(cT);
    assertClose('c', got, c, tolFor(K));
    assertClose('c vs unsplit', got, await gpu.readF32(plainT), tolFor(K));
    // The split really ran: its slices are the partial products (slice 0 = k < 336, alpha 1, no c).
    const parts = await gpu.readF32(scratch);
    const first = new Float32Array(M * N), aS = new Float32Array(M * 336), bS = new Float32Array(336 * N);
    for (let m = 0; m < M; m++) for (let k = 0; k < 336; k++) aS[m * 336 + k] = transA ? a[k * M + m] : a[m * K + k];
    for (let k = 0; k < 336; k++) for (let n = 0; n < N; n++) bS[k * N + n] = transB ? b[n * K + k] : b[k * N + n];
    matmulRef(first, aS, bS, M, N, 336);
    assertClose('slice 0', parts.subarray(0, M * N), first, tolFor(336));
  });

  test('split-K: when it splits, and the scratch caps the slices', async () => {
    // The LM head's input gradient at Llama-3.2-1B (a 128-token loss chunk, hidden 2048, vocabulary
    // 128,256: 64 tiles) and at Llama-3-8B (hidden 4096: 128 tiles); a tiny model's vocabulary is
    // too short to cut; 256 tiles need no split; matmul() without scratch never splits.
    expect(matmulSplit(128, 2048, 128256)).toEqual({ slices: 4, chunk: 32064 });
    expect(matmulSplit(128, 4096, 128256)).toEqual({ slices: 2, chunk: 64128 });
    expect(matmulSplit(512, 64, 256)).toEqual({ slices: 1, chunk: 256 });
    expect(matmulSplit(512, 2048, 128256).slices).toBe(1);
    expect(matmulSplitBytes(128, 2048, 128256)).toBe(4 * 128 * 2048 * 4);
    expect(matmulSplitBytes(512, 64, 256)).toBe(0);
    expect(matmulSplit(128, 2048, 128256, 2)).toEqual({ slices: 2, chunk: 64128 });
    expect(matmulSplit(128, 2048, 128256, 1).slices).toBe(1);
    // Room for two of the three slices: two slices of 512 and 488, as the scratch shows.
    const M = 37, N = 70, K = 1000;
    const a = rand(M * K, 51), b = rand(K * N, 52);
    const scratch = gpu.tensor('split', 'scratch', (2 * M * N + 5) * 4);
    const cT = gpu.tensor('c', 'activations', M * N * 4);
    matmulTiled(gpu, cT, gpu.tensor('a', 'activations', a), gpu.tensor('b', 'weights', b), M, N, K, { splitK: scratch });
    const c = new Float32Array(M * N);
    matmulRef(c, a, b, M, N, K);
    assertClose('c', await gpu.readF32(cT), c, tolFor(K));
    const parts = await gpu.readF32(scratch);
    const slice1 = new Float32Array(M * N);
    const aS = new Float32Array(M * 488);
    for (let m = 0; m < M; m++) aS.set(a.subarray(m * K + 512, m * K + K), m * 488);
    matmulRef(slice1, aS, b.subarray(512 * N), M, N, 488);
    assertClose('slice 1', parts.subarray(M * N, 2 * M * N), slice1, tolFor(488));
  });

  test('refuses c aliasing an input', () => {
    const t = gpu.tensor('x', 'activations', 64);
    expect(() => matmul(gpu, t, t, gpu.tensor('b', 'weights', 64), 2, 2, 2)).toThrow(/must not share a buffer/);
  });
});
