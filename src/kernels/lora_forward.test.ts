import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Gpu } from '../gpu/runtime.ts';
import { assertClose, goldenArray, loadGolden, rand } from '../testing/compare.ts';
import { dropoutUniforms, loraDown, loraDownQkv, loraForward, loraForwardQkv, loraUpQkv } from './lora_forward.ts';
import { dropoutRef, loraForwardQkvRef, loraForwardRef, pcg } from './lora_forward.ref.ts';
import { rmsnormForward } from './rmsnorm_forward.ts';
import { devicesPerPath, REDUCTION_PATHS } from '../testing/gpu-paths.ts';

const TOL = { atol: 1e-5, rtol: 1e-4 };

/** Element-wise equality without vitest's deep-diff cost on big arrays. */
function sameBits(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** Kept fraction of a mask produced by dropoutRef on ones. */
function keptFraction(mask: Float32Array): number {
  let kept = 0;
  for (const v of mask) if (v !== 0) kept++;
  return kept / mask.length;
}

describe('lora_forward twin', () => {
  const golden = loadGolden('lora');
  test.each(Object.keys(golden))('matches PyTorch: %s', (name) => {
    const c = golden[name];
    const [M, N, K, R] = [c.M, c.N, c.K, c.R] as number[];
    // PyTorch's scale for the case's alpha, R and rsLoRA flag (src/model/lora.test.ts checks loraScaling gives the same).
    const scale = c.scale as number;
    const Y = goldenArray(c.y_base), U = new Float32Array(M * R);
    loraForwardRef(Y, U, goldenArray(c.x), goldenArray(c.A), goldenArray(c.B), M, N, K, R, scale, c.dropout as number, c.seed as number);
    assertClose(`${name}.U`, U, goldenArray(c.U), TOL);
    assertClose(`${name}.y`, Y, goldenArray(c.y), TOL);
  });

  test('pcg matches known values (the same hash as the WGSL and lora.py)', () => {
    // Spot values computed by hand from the PCG-RXS-M-XS recipe; a change here breaks stored goldens.
    const ref = (v: number) => {
      const st = BigInt.asUintN(32, BigInt(v) * 747796405n + 2891336453n);
      const w = BigInt.asUintN(32, ((st >> ((st >> 28n) + 4n)) ^ st) * 277803737n);
      return Number((w >> 22n) ^ w);
    };
    for (const v of [0, 1, 2, 12345, 0x7fffffff, 0xffffffff]) expect(pcg(v)).toBe(ref(v));
  });

  test('p = 0 is exactly the identity', () => {
    const x = rand(1000, 1, -3, 3);
    expect(Array.from(dropoutRef(x, 42, 0))).toEqual(Array.from(x));
    expect(dropoutUniforms(0)).toEqual({ keepThreshold: 0, invKeep: 1 });
  });

  test.each([0.05, 0.1, 0.5, 0.9])('keep rate is 1-p within 5 sigma, kept values scaled by 1/(1-p): p=%s', (p) => {
    const n = 200_000;
    const mask = dropoutRef(new Float32Array(n).fill(1), 7, p);
    const sigma = Math.sqrt(p * (1 - p) / n);
    expect(Math.abs(keptFraction(mask) - (1 - p))).toBeLessThan(5 * sigma);
    const inv = Math.fround(1 / (1 - p));
    expect(mask.every((v) => v === 0 || v === inv)).toBe(true);
  });

  test('same seed gives the same mask, another seed a different one', () => {
    const ones = new Float32Array(50_000).fill(1), p = 0.3;
    const a = dropoutRef(ones, 1, p), b = dropoutRef(ones, 1, p), c = dropoutRef(ones, 2, p);
    expect(sameBits(a, b)).toBe(true);
    // Independent masks disagree at a fraction 2p(1-p) = 0.42 of the positions.
    let diff = 0;
    for (let i = 0; i < a.length; i++) if ((a[i] === 0) !== (c[i] === 0)) diff++;
    expect(Math.abs(diff / a.length - 2 * p * (1 - p))).toBeLessThan(0.02);
    // And neighbouring elements are not correlated: P(both kept) ~ (1-p)^2.
    let both = 0;
    for (let i = 0; i + 1 < a.length; i++) if (a[i] !== 0 && a[i + 1] !== 0) both++;
    expect(Math.abs(both / (a.length - 1) - (1 - p) ** 2)).toBeLessThan(0.02);
  });
});

describe('lora_forward kernel', () => {
  let gpu: Gpu;
  beforeAll(async () => {
    gpu = await Gpu.create();
  });
  afterAll(() => gpu?.destroy());
  const onPath = devicesPerPath();

  // M, N, K not multiples of the 64-row tiles or the 16/32 reduction chunks; R = 20 spans two
  // 16-wide rank tiles and two reduction chunks of `up`.
  test.each([
    [5, 7, 13, 1, 0, 0],
    [67, 33, 70, 8, 0.1, 3],
    [130, 65, 97, 16, 0.25, 9],
    [20, 9, 35, 20, 0.5, 11],
  ])('equals its twin at M=%i N=%i K=%i R=%i dropout=%s seed=%i', async (M, N, K, R, p, seed) => {
    const x = rand(M * K, M + K, -2, 2), A = rand(R * K, R + 1, -0.3, 0.3), B = rand(N * R, N + 2, -0.5, 0.5);
    const Y0 = rand(M * N, M + N + 3), scale = 16 / R; // alpha 16
    const YT = gpu.tensor('Y', 'activations', Y0), UT = gpu.tensor('U', 'activations', M * R * 4);
    loraForward(
      gpu, YT, UT, gpu.tensor('x', 'activations', x), gpu.tensor('A', 'lora', A), gpu.tensor('B', 'lora', B),
      { M, N, K, R }, { scale, dropout: p, seed },
    );
    const Y = Y0.slice(), U = new Float32Array(M * R);
    loraForwardRef(Y, U, x, A, B, M, N, K, R, scale, p, seed);
    assertClose('U', await gpu.readF32(UT), U, TOL);
    assertClose('Y', await gpu.readF32(YT), Y, TOL);
  });

  // The one-dispatch `decode` entry (noU): 1 to 4 rows, ragged N and K, R up to 64; U is left alone.
  test.each([
    [1, 7, 13, 1],
    [1, 130, 97, 8],
    [3, 65, 200, 20],
    [4, 64, 64, 64],
  ])('noU (one dispatch) equals its twin at M=%i N=%i K=%i R=%i', async (M, N, K, R) => {
    const x = rand(M * K, M + K + 5, -2, 2), A = rand(R * K, R + 6, -0.3, 0.3), B = rand(N * R, N + 7, -0.5, 0.5);
    const Y0 = rand(M * N, M + N + 8), scale = 16 / R;
    const YT = gpu.tensor('Y', 'activations', Y0), UT = gpu.tensor('U', 'activations', M * R * 4);
    const d0 = gpu.counters.dispatches;
    loraForward(gpu, YT, UT, gpu.tensor('x', 'activations', x), gpu.tensor('A', 'lora', A), gpu.tensor('B', 'lora', B),
      { M, N, K, R }, { scale, seed: 1, noU: true });
    expect(gpu.counters.dispatches - d0).toBe(1);
    const Y = Y0.slice(), U = new Float32Array(M * R);
    loraForwardRef(Y, U, x, A, B, M, N, K, R, scale);
    assertClose('Y', await gpu.readF32(YT), Y, TOL);
    expect(Array.from(await gpu.readF32(UT)).every((v) => v === 0)).toBe(true);
  });

  // `decode_qkv`: the input norm and the q/k/v adapters of a decoded token in one dispatch. Ragged K
  // (odd, below and above the norm's 128 lanes) and N (against the 64-column workgroups), M = 1..4,
  // any subset of the three projections: against the twin, and bit for bit against rmsnorm_forward
  // then `decode` onto a zero Y (what the model ran before).
  test.each([
    [1, [7, 5, 9], 13, 1, [true, false, true]],
    [3, [130, 33, 33], 197, 8, [true, true, true]],
    [4, [64, 65, 1], 64, 20, [false, true, false]],
    [2, [70, 9, 70], 300, 64, [false, false, true]],
  ] as const)('decode_qkv at M=%i N=%j K=%i R=%i adapters=%j: twin, and bit for bit rmsnorm + decode (both reduction paths)', async (M, Ns, K, R, on) => {
    // The norm reduces as rmsnorm_forward does, on the device's path: both paths are compared.
    for (const path of REDUCTION_PATHS) {
      const gpu = onPath[path];
      const h = rand(M * K, M + K, -2, 2), w = rand(K, K + 2, 0.5, 1.5), scale = 16 / R, eps = 1e-5;
      // Every A and B in one parameter buffer, at offsets as the model's adapter lays them out.
      const parts = Ns.map((N, j) => ({ A: rand(R * K, 3 * j + R, -0.3, 0.3), B: rand(N * R, 3 * j + N, -0.5, 0.5), N }));
      // 256-byte aligned (64 floats), as bindable views must be, and not at the buffer's start.
      const up64 = (n: number) => Math.ceil(n / 64) * 64;
      let at = 64;
      const views = parts.map((p) => {
        const v = { a: at, b: at + up64(p.A.length) };
        at = v.b + up64(p.B.length);
        return v;
      });
      const flat = new Float32Array(at);
      parts.forEach((p, j) => { flat.set(p.A, views[j].a); flat.set(p.B, views[j].b); });
      const P = gpu.tensor('P', 'lora', flat);
      const hT = gpu.tensor('h', 'activations', h), wT = gpu.tensor('w', 'weights', w), x1T = gpu.tensor('x1', 'activations', M * K * 4);
      const Y0 = Ns.map((N, j) => rand(M * N, 40 + j));
      const outs = Ns.map((N, j) => gpu.tensor(`y${j}`, 'activations', Y0[j])) as [never, never, never];
      const slots = parts.map((p, j) => (on[j]
        ? { Y: outs[j], A: { tensor: P, offset: views[j].a * 4, size: p.A.length * 4 }, B: { tensor: P, offset: views[j].b * 4, size: p.B.length * 4 }, N: p.N }
        : undefined)) as Parameters<typeof loraForwardQkv>[2];
      const d0 = gpu.counters.dispatches;
      loraForwardQkv(gpu, outs, slots, x1T, hT, wT, { M, K, R }, { scale, eps });
      expect(gpu.counters.dispatches - d0).toBe(1);
      // What the model ran before: the norm, then each adapter's `decode` onto a zero output.
      const x1P = gpu.tensor('x1.plain', 'activations', M * K * 4);
      rmsnormForward(gpu, x1P, gpu.tensor('rstd', 'activations', M * 4), hT, wT, M, K, eps);
      const plain = parts.map((p, j) => {
        if (!on[j]) return undefined;
        const y = gpu.tensor(`p${j}`, 'activations', M * p.N * 4);
        loraForward(gpu, y, gpu.tensor('U', 'activations', M * R * 4), x1P, slots[j]!.A, slots[j]!.B, { M, N: p.N, K, R }, { scale, noU: true });
        return y;
      });
      const x1 = new Float32Array(M * K), Y = Y0.map((y, j) => (on[j] ? y.slice() : undefined));
      loraForwardQkvRef(Y, x1, h, w, parts.map((p, j) => (on[j] ? p : undefined)), M, K, R, scale, eps);
      const gotX1 = await gpu.readF32(x1T);
      assertClose('x1', gotX1, x1, TOL);
      expect(sameBits(gotX1, await gpu.readF32(x1P)), path).toBe(true);
      for (let j = 0; j < 3; j++) {
        const got = await gpu.readF32(outs[j]);
        if (!on[j]) { expect(sameBits(got, Y0[j])).toBe(true); continue; } // untouched
        assertClose(`y${j}`, got, Y[j]!, TOL);
        expect(sameBits(got, await gpu.readF32(plain[j]!)), path).toBe(true);
      }
    }
  });

  // `up_qkv`: the second stage of the q/k/v adapters in one dispatch after each one's `down`. M and
  // N ragged against the 64×64 tile, R across two 16-deep chunks, any subset of the projections,
  // dropout on: against the twin, and bit for bit against loraForward on each (down, up).
  test.each([
    [5, [7, 5, 9], 13, 1, [true, false, true], 0],
    [70, [130, 33, 33], 40, 8, [true, true, true], 0.1],
    [130, [9, 65, 1], 33, 20, [false, true, false], 0.25],
  ] as const)('up_qkv at M=%i N=%j K=%i R=%i adapters=%j dropout=%s: twin, and bit for bit loraForward', async (M, Ns, K, R, on, dropout) => {
    const x = rand(M * K, M + K + 1, -2, 2), scale = 16 / R;
    const parts = Ns.map((N, j) => ({ A: rand(R * K, 5 * j + R, -0.3, 0.3), B: rand(N * R, 5 * j + N, -0.5, 0.5), N }));
    const up64 = (n: number) => Math.ceil(n / 64) * 64;
    let at = 64;
    const views = parts.map((p) => {
      const v = { a: at, b: at + up64(p.A.length) };
      at = v.b + up64(p.B.length);
      return v;
    });
    const flat = new Float32Array(at);
    parts.forEach((p, j) => { flat.set(p.A, views[j].a); flat.set(p.B, views[j].b); });
    const P = gpu.tensor('P', 'lora', flat), xT = gpu.tensor('x', 'activations', x);
    const Av = (j: number) => ({ tensor: P, offset: views[j].a * 4, size: parts[j].A.length * 4 });
    const Bv = (j: number) => ({ tensor: P, offset: views[j].b * 4, size: parts[j].B.length * 4 });
    const Y0 = Ns.map((N, j) => rand(M * N, 60 + j));
    const outs = Ns.map((N, j) => gpu.tensor(`y${j}`, 'activations', Y0[j])) as [never, never, never];
    const Us = Ns.map((_, j) => gpu.tensor(`u${j}`, 'activations', M * R * 4));
    const seedOf = (j: number) => 100 + j;
    for (let j = 0; j < 3; j++) if (on[j]) loraDown(gpu, Us[j], xT, Av(j), { M, N: Ns[j], K, R }, { scale, dropout, seed: seedOf(j) });
    const d0 = gpu.counters.dispatches;
    loraUpQkv(gpu, outs, Ns.map((N, j) => (on[j] ? { U: Us[j], B: Bv(j), N } : undefined)) as Parameters<typeof loraUpQkv>[2], { M, R }, { scale });
    expect(gpu.counters.dispatches - d0).toBe(1);
    for (let j = 0; j < 3; j++) {
      const got = await gpu.readF32(outs[j]);
      if (!on[j]) { expect(sameBits(got, Y0[j])).toBe(true); continue; }
      const plain = gpu.tensor(`p${j}`, 'activations', Y0[j]);
      loraForward(gpu, plain, gpu.tensor('U', 'activations', M * R * 4), xT, Av(j), Bv(j), { M, N: Ns[j], K, R }, { scale, dropout, seed: seedOf(j) });
      const y = Y0[j].slice();
      loraForwardRef(y, new Float32Array(M * R), x, parts[j].A, parts[j].B, M, Ns[j], K, R, scale, dropout, seedOf(j));
      assertClose(`y${j}`, got, y, TOL);
      expect(sameBits(got, await gpu.readF32(plain))).toBe(true);
    }
  });

  // `down_qkv`: the first stage of the q/k/v adapters in one dispatch, each with its own dropout seed,
  // U_j at offsets in one buffer. M ragged against the 64-row tile, R against the 16-wide one (and
  // past it), K across several 32-deep chunks and ragged, any subset of the projections: against the
  // twin, and bit for bit against loraDown on each.
  test.each([
    [5, 13, 1, [true, false, true], 0],
    [70, 40, 8, [true, true, true], 0.1],
    [130, 33, 20, [false, true, false], 0.25],
    [64, 97, 16, [false, true, true], 0.5],
  ] as const)('down_qkv at M=%i K=%i R=%i adapters=%j dropout=%s: twin, and bit for bit loraDown', async (M, K, R, on, dropout) => {
    const x = rand(M * K, M + K + 2, -2, 2);
    const As = [0, 1, 2].map((j) => rand(R * K, 7 * j + R + K, -0.3, 0.3));
    const up64 = (n: number) => Math.ceil(n / 64) * 64;
    const flat = new Float32Array(64 + 3 * up64(R * K));
    As.forEach((a, j) => flat.set(a, 64 + j * up64(R * K)));
    const P = gpu.tensor('P', 'lora', flat), xT = gpu.tensor('x', 'activations', x);
    const Av = (j: number) => ({ tensor: P, offset: (64 + j * up64(R * K)) * 4, size: R * K * 4 });
    // The U buffer starts as noise: what no adapter owns must stay as it was.
    const Ustride = up64(M * R), U0 = rand(3 * Ustride, 77);
    const Ug = gpu.tensor('Ug', 'activations', U0);
    const Uv = (j: number) => ({ tensor: Ug, offset: j * Ustride * 4, size: M * R * 4 });
    const seeds = gpu.scalars('seeds', Uint32Array.of(11, 400, 9, 12345));
    const seedIndex = (j: number) => 3 - j;
    const d0 = gpu.counters.dispatches;
    loraDownQkv(gpu, xT, [0, 1, 2].map((j) => (on[j] ? { A: Av(j), U: Uv(j), seedIndex: seedIndex(j) } : undefined)) as Parameters<typeof loraDownQkv>[2],
      { M, K, R }, { dropout, seeds: { table: seeds } });
    expect(gpu.counters.dispatches - d0).toBe(1);
    const got = await gpu.readF32(Ug);
    const table = [11, 400, 9, 12345];
    for (let j = 0; j < 3; j++) {
      const mine = got.subarray(j * Ustride, j * Ustride + M * R);
      if (!on[j]) { expect(sameBits(mine, U0.subarray(j * Ustride, j * Ustride + M * R))).toBe(true); continue; }
      const u = new Float32Array(M * R);
      loraForwardRef(new Float32Array(M), u, x, As[j], new Float32Array(R), M, 1, K, R, 1, dropout, table[seedIndex(j)]);
      assertClose(`U${j}`, mine, u, TOL);
      const plain = gpu.tensor(`u${j}`, 'activations', M * R * 4);
      loraDown(gpu, plain, xT, Av(j), { M, N: 1, K, R }, { scale: 1, dropout, seeds: { table: seeds, index: seedIndex(j) } });
      expect(sameBits(mine, await gpu.readF32(plain))).toBe(true);
    }
  });

  test.each([0.1, 0.5])('GPU mask equals the twin mask and keeps 1-p: p=%s', async (p) => {
    // K = 1, A = [[1]]: U[m] = dropout(x)[m, 0] = mask[m] / (1-p) for x = 1, over 16384 flat indices.
    const M = 16_384;
    const UT = gpu.tensor('U', 'activations', M * 4), YT = gpu.tensor('Y', 'activations', M * 4);
    const ones = new Float32Array(M).fill(1);
    const run = (seed: number) => loraForward(
      gpu, YT, UT, gpu.tensor('x', 'activations', ones), gpu.tensor('A', 'lora', new Float32Array([1])),
      gpu.tensor('B', 'lora', new Float32Array([0])), { M, N: 1, K: 1, R: 1 }, { scale: 1, dropout: p, seed },
    );
    run(5);
    const mask = await gpu.readF32(UT);
    expect(sameBits(mask, dropoutRef(ones, 5, p))).toBe(true);
    expect(Math.abs(keptFraction(mask) - (1 - p))).toBeLessThan(5 * Math.sqrt(p * (1 - p) / M));
    run(5);
    expect(sameBits(await gpu.readF32(UT), mask)).toBe(true);
    run(6);
    expect(sameBits(await gpu.readF32(UT), mask)).toBe(false);
  });
});
