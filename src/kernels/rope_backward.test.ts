import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Gpu } from '../gpu/runtime.ts';
import { assertClose, finiteDifference, goldenArray, loadGolden, rand, randInts } from '../testing/compare.ts';
import { ropeBackward, ropeBackwardQk } from './rope_backward.ts';
import { ropeBackwardQkRef, ropeBackwardRef } from './rope_backward.ref.ts';
import { ropeTables } from './rope_forward.ts';
import { plainRopeTables } from '../testing/rope-tables.ts';

const TOL = { atol: 1e-6, rtol: 1e-5 };

describe('rope_backward twin', () => {
  const golden = loadGolden('rope');
  const full = Object.keys(golden).filter((n) => golden[n].x !== undefined);
  test.each(full)('matches PyTorch autograd: %s', (name) => {
    const c = golden[name];
    const B = c.B as number, T = c.T as number, H = c.H as number, D = c.D as number;
    const positions = Uint32Array.from(goldenArray(c.positions));
    const { cos, sin } = ropeTables(goldenArray(c.inv_freq), Math.max(...positions) + 1);
    const dx = goldenArray(c.dy);
    ropeBackwardRef(dx, positions, cos, sin, B, T, H, D);
    assertClose(`${name}.dx`, dx, goldenArray(c.dx), TOL);
  });

  test('matches finite differences', () => {
    const B = 2, T = 3, Hn = 2, D = 8, P = 40;
    const { cos, sin } = plainRopeTables(D, 1e4, P);
    const positions = Uint32Array.from([0, 5, 39, 1, 0, 17]);
    const x = rand(B * T * Hn * D, 21), dy = rand(B * T * Hn * D, 22);
    const half = D / 2;
    // L(x) = sum(rope(x) * dy), in float64.
    const loss = (xs: Float64Array) => {
      let L = 0;
      for (let row = 0; row < B * T * Hn; row++) {
        const pos = positions[Math.floor(row / Hn)];
        for (let j = 0; j < half; j++) {
          const c = cos[pos * half + j], s = sin[pos * half + j];
          const a = row * D + j, x1 = xs[a], x2 = xs[a + half];
          L += (x1 * c - x2 * s) * dy[a] + (x2 * c + x1 * s) * dy[a + half];
        }
      }
      return L;
    };
    const dx = dy.slice();
    ropeBackwardRef(dx, positions, cos, sin, B, T, Hn, D);
    expect(finiteDifference(loss, Float64Array.from(x), dx, [0, 3, 4, 7, 20, 45, 95])).toEqual([]);
  });
});

describe('rope_backward kernel', () => {
  let gpu: Gpu;
  beforeAll(async () => {
    gpu = await Gpu.create();
  });
  afterAll(() => gpu?.destroy());

  test.each([
    [1, 1, 1, 2, 4],
    [2, 5, 3, 10, 50],
    [1, 37, 7, 64, 64],
    [3, 4, 2, 6, 20],
  ])('equals its twin at B=%i T=%i Hn=%i D=%i P=%i', async (B, T, Hn, D, P) => {
    const { cos, sin } = plainRopeTables(D, 1e4, P);
    const positions = randInts(B * T, P, 3 * B * T + D);
    if (B * T > 5) positions[5] = P + 1; // past the table: left unchanged
    const dy = rand(B * T * Hn * D, 2 * Hn * D + P, -2, 2);
    const dxT = gpu.tensor('dx', 'activations', dy);
    ropeBackward(
      gpu, dxT, gpu.tensor('positions', 'activations', positions), gpu.tensor('cos', 'scratch', cos),
      gpu.tensor('sin', 'scratch', sin), B, T, Hn, D,
    );
    const dx = dy.slice();
    ropeBackwardRef(dx, positions, cos, sin, B, T, Hn, D);
    assertClose('dx', await gpu.readF32(dxT), dx, TOL);
  });
  // `qk`: q and k (fewer heads) in one dispatch; pair counts not multiples of 256, a position past
  // the table. Against the twin, and bit for bit against one dispatch each.
  test.each([
    [1, 5, 4, 2, 10, 50],
    [2, 37, 8, 2, 64, 64],
    [3, 4, 3, 3, 6, 20],
  ])('qk equals its twin and two single dispatches at B=%i T=%i H=%i Hkv=%i D=%i P=%i', async (B, T, H, Hkv, D, P) => {
    const { cos, sin } = plainRopeTables(D, 1e4, P);
    const positions = randInts(B * T, P, 5 * B * T + D);
    positions[B * T - 1] = P + 2;
    const q = rand(B * T * H * D, H * D + P + 1, -2, 2), k = rand(B * T * Hkv * D, Hkv * D + P + 2, -2, 2);
    const posT = gpu.tensor('positions', 'activations', positions), cT = gpu.tensor('cos', 'scratch', cos), sT = gpu.tensor('sin', 'scratch', sin);
    const qT = gpu.tensor('q', 'activations', q), kT = gpu.tensor('k', 'activations', k);
    const d0 = gpu.counters.dispatches;
    ropeBackwardQk(gpu, qT, kT, posT, cT, sT, B, T, H, Hkv, D);
    expect(gpu.counters.dispatches - d0).toBe(1);
    const q1 = gpu.tensor('q1', 'activations', q), k1 = gpu.tensor('k1', 'activations', k);
    ropeBackward(gpu, q1, posT, cT, sT, B, T, H, D);
    ropeBackward(gpu, k1, posT, cT, sT, B, T, Hkv, D);
    const qr = q.slice(), kr = k.slice();
    ropeBackwardQkRef(qr, kr, positions, cos, sin, B, T, H, Hkv, D);
    const [gq, gk] = [await gpu.readF32(qT), await gpu.readF32(kT)];
    assertClose('q', gq, qr, TOL);
    assertClose('k', gk, kr, TOL);
    expect(gq).toEqual(await gpu.readF32(q1));
    expect(gk).toEqual(await gpu.readF32(k1));
  });
});
