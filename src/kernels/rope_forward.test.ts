import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Gpu } from '../gpu/runtime.ts';
import { assertClose, goldenArray, loadGolden, rand, randInts, type GoldenTensor } from '../testing/compare.ts';
import { plainRopeTables } from '../testing/rope-tables.ts';
import { ropeAppendKv, ropeForward, ropeForwardQk, ropeTables } from './rope_forward.ts';
import { ropeAppendKvRef, ropeForwardQkRef, ropeForwardRef } from './rope_forward.ref.ts';

const TOL = { atol: 1e-6, rtol: 1e-5 };
// torch's f32 cos/sin vs our f64 cos/sin rounded to f32: within an ulp of values <= 1.
const TABLE_TOL = { atol: 1.2e-7, rtol: 0 };

type Case = Record<string, GoldenTensor | number>;

/** Tables and positions for a golden case, from the inv_freq PyTorch computed (src/model/rope.test.ts
 *  proves ours equal to it bit for bit). */
function goldenInputs(c: Case) {
  const invFreq = goldenArray(c.inv_freq);
  const positions = Uint32Array.from(goldenArray(c.positions));
  return { positions, ...ropeTables(invFreq, Math.max(...positions) + 1) };
}

describe('rope_forward twin', () => {
  const golden = loadGolden('rope');
  const names = Object.keys(golden);

  const full = names.filter((n) => golden[n].x !== undefined);
  test.each(full)('cos/sin tables and forward match PyTorch: %s', (name) => {
    const c = golden[name];
    const B = c.B as number, T = c.T as number, H = c.H as number, D = c.D as number;
    const { positions, cos, sin } = goldenInputs(c);
    const half = D / 2;
    const gotCos = new Float32Array(B * T * half), gotSin = new Float32Array(B * T * half);
    for (let bt = 0; bt < B * T; bt++) {
      for (let j = 0; j < half; j++) {
        gotCos[bt * half + j] = cos[positions[bt] * half + j];
        gotSin[bt * half + j] = sin[positions[bt] * half + j];
      }
    }
    assertClose(`${name}.cos`, gotCos, goldenArray(c.cos), TABLE_TOL);
    assertClose(`${name}.sin`, gotSin, goldenArray(c.sin), TABLE_TOL);
    const y = goldenArray(c.x);
    ropeForwardRef(y, positions, cos, sin, B, T, H, D);
    assertClose(`${name}.y`, y, goldenArray(c.y), TOL);
  });
});

describe('rope_forward kernel', () => {
  let gpu: Gpu;
  beforeAll(async () => {
    gpu = await Gpu.create();
  });
  afterAll(() => gpu?.destroy());

  // Pair counts 1, 75 and 8288 (not multiples of the 256-thread workgroup); D=10 has an odd half;
  // the llama3 case uses positions near 8k; one case holds a position past the table (left as is).
  test.each([
    [1, 1, 1, 2, 4, 'default'],
    [2, 5, 3, 10, 50, 'default'],
    [1, 37, 7, 64, 64, 'default'],
    [2, 3, 4, 64, 8192, 'llama3'],
    [3, 4, 2, 6, 20, 'out-of-table'],
  ])('equals its twin at B=%i T=%i Hn=%i D=%i P=%i (%s)', async (B, T, Hn, D, P, kind) => {
    // llama3: Llama 3.2's frequencies at D=64 (theta 5e5, factor 32), as PyTorch computed them.
    const { cos, sin } = kind === 'llama3'
      ? ropeTables(goldenArray(loadGolden('rope').invfreq_llama32.inv_freq), P)
      : plainRopeTables(D, 1e4, P);
    const positions = randInts(B * T, P, B * T + D);
    if (kind === 'llama3') positions.forEach((p, i) => (positions[i] = P - 1 - (p % 300)));
    if (kind === 'out-of-table') positions[5] = P + 3;
    const x = rand(B * T * Hn * D, Hn * D + P, -2, 2);
    const xT = gpu.tensor('x', 'activations', x);
    ropeForward(
      gpu, xT, gpu.tensor('positions', 'activations', positions), gpu.tensor('cos', 'scratch', cos),
      gpu.tensor('sin', 'scratch', sin), B, T, Hn, D,
    );
    const y = x.slice();
    ropeForwardRef(y, positions, cos, sin, B, T, Hn, D);
    assertClose('y', await gpu.readF32(xT), y, TOL);
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
    ropeForwardQk(gpu, qT, kT, posT, cT, sT, B, T, H, Hkv, D);
    expect(gpu.counters.dispatches - d0).toBe(1);
    const q1 = gpu.tensor('q1', 'activations', q), k1 = gpu.tensor('k1', 'activations', k);
    ropeForward(gpu, q1, posT, cT, sT, B, T, H, D);
    ropeForward(gpu, k1, posT, cT, sT, B, T, Hkv, D);
    const qr = q.slice(), kr = k.slice();
    ropeForwardQkRef(qr, kr, positions, cos, sin, B, T, H, Hkv, D);
    const [gq, gk] = [await gpu.readF32(qT), await gpu.readF32(kT)];
    assertClose('q', gq, qr, TOL);
    assertClose('k', gk, kr, TOL);
    expect(gq).toEqual(await gpu.readF32(q1));
    expect(gk).toEqual(await gpu.readF32(k1));
  });

  // Decoding's append: T new rows (a prefill of several, or one) at their positions in a cache whose
  // other rows must stay as they were; rows of Hkv·D = 20 floats are not 256-byte aligned; a
  // position past the RoPE table (copied unrotated) and one past the cache (not written).
  test.each([
    [1, 2, 2, 10, 0, 8, 'default'],
    [5, 6, 2, 10, 3, 8, 'default'],
    [1, 32, 8, 64, 130, 131, 'default'],
    [3, 3, 3, 6, 4, 9, 'past the table'],
    [3, 9, 3, 6, 4, 9, 'past the cache'],
  ])('append equals its twin at T=%i H=%i Hkv=%i D=%i pos0=%i rows=%i (%s)', async (T, H, Hkv, D, pos0, rows, kind) => {
    const { cos, sin } = plainRopeTables(D, 1e4, kind === 'past the table' ? pos0 + 1 : rows);
    const positions = Uint32Array.from({ length: T }, (_, i) => pos0 + i);
    if (kind === 'past the cache') positions[1] = rows + 2;
    const k = rand(T * Hkv * D, T + D, -2, 2), v = rand(T * Hkv * D, T + D + 1, -2, 2);
    const kc = rand(rows * Hkv * D, rows, -1, 1), vc = rand(rows * Hkv * D, rows + 1, -1, 1);
    const q = rand(T * H * D, T + H, -2, 2);
    const kcT = gpu.tensor('kc', 'kv-cache', kc), vcT = gpu.tensor('vc', 'kv-cache', vc), kT = gpu.tensor('k', 'activations', k);
    const qT = gpu.tensor('q', 'activations', q);
    ropeAppendKv(gpu, qT, kT, gpu.tensor('v', 'activations', v), gpu.tensor('positions', 'activations', positions),
      gpu.tensor('cos', 'scratch', cos), gpu.tensor('sin', 'scratch', sin), kcT, vcT, T, H, Hkv, D);
    ropeAppendKvRef(q, k, v, positions, cos, sin, kc, vc, T, H, Hkv, D);
    assertClose('q', await gpu.readF32(qT), q, TOL);
    assertClose('k cache', await gpu.readF32(kcT), kc, TOL);
    expect(Array.from(await gpu.readF32(vcT))).toEqual(Array.from(vc)); // a copy, exact
    expect(Array.from(await gpu.readF32(kT))).toEqual(Array.from(k)); // k itself untouched
  });
});
