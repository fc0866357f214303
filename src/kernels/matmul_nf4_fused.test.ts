// The fused tiled NF4 projections (M > 4: prompts and training) against their twin on ragged shapes
// and bit for bit against the unfused kernels (matmul_nf4 ×3; matmul_nf4 ×2 and swiglu_forward).
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { COUNTING_LIMITS, countingGpu } from '../gpu/counting.ts';
import { Gpu } from '../gpu/runtime.ts';
import { assertClose, rand } from '../testing/compare.ts';
import { recordDispatches } from '../testing/dispatches.ts';
import { doubleQuantWords, packWords, quantizeNF4 } from '../quant/nf4.ts';
import { matmulNf4GateUp, matmulNf4Qkv, qkvTiles } from './matmul_nf4_fused.ts';
import { matmulNf4GateUpRef, matmulNf4QkvRef } from './matmul_nf4_fused.ref.ts';
import { matmulNf4Tiled, type NF4KStep } from './matmul_nf4.ts';
import { swigluForward } from './swiglu_forward.ts';

const TOL = { atol: 1e-5, rtol: 1e-4 };

function weights(N: number, K: number, blocksize: number, seed: number, dq: boolean): { Wq: Uint32Array; absmax: Float32Array | Uint32Array } {
  const { packed, absmax } = quantizeNF4(rand(N * K, seed + N * K, -0.2, 0.2), blocksize);
  return { Wq: packWords(packed, N * K), absmax: dq ? doubleQuantWords(absmax) : absmax };
}

let gpu: Gpu;
beforeAll(async () => {
  gpu = await Gpu.create();
});
afterAll(() => gpu?.destroy());

describe('matmul_nf4_fused', () => {
  // M ragged against the 64-row tile (and M <= 4, which the tiled kernel also takes), N_j ragged
  // against 64 (one linear narrower than a tile, one over two tiles), K odd (blocks cross rows, rows
  // start mid-word) and past one K step, blocksizes 32 and 128, double-quantized absmax. Each case
  // runs the fused kernel at one K step and matmul_nf4 at the other: bit-equal across steps too.
  test.each([
    [5, [17, 5, 9], 67, 64, false, 16],
    [5, [17, 5, 9], 67, 64, false, 32],
    [70, [130, 33, 33], 40, 64, true, 32],
    [3, [64, 16, 65], 33, 32, false, 16],
    [129, [9, 70, 1], 96, 64, false, 32],
    [66, [70, 9, 64], 100, 128, true, 16],
    [64, [128, 64, 64], 80, 64, true, 16],   // whole tiles: matmul_nf4 (K step 32) runs checked
    [64, [128, 64, 64], 96, 64, true, 32],   // whole tiles: matmul_nf4 (K step 16) takes its bounds-free form
  ] as const)('qkv at M=%i N=%j K=%i blocksize=%i dq=%s K step %i: twin, and bit for bit three matmul_nf4', async (M, Ns, K, blocksize, dq, kStep) => {
    const X = rand(M * K, M + K, -1, 1);
    const xT = gpu.tensor('x', 'activations', X);
    const w = Ns.map((N, j) => weights(N, K, blocksize, j, dq));
    const parts = Ns.map((N, j) => ({
      Y: gpu.tensor(`y${j}`, 'activations', rand(M * N, 5 + j)), Wq: gpu.tensor(`w${j}`, 'weights', w[j].Wq),
      absmax: gpu.tensor(`a${j}`, 'weights', w[j].absmax), N,
    })) as unknown as Parameters<typeof matmulNf4Qkv>[2];
    const opts = { blocksize, doubleQuant: dq };
    const other = (48 - kStep) as NF4KStep;
    matmulNf4Qkv(gpu, xT, parts, M, K, { ...opts, kStep });
    const plain = parts.map((p, j) => {
      const y = gpu.tensor(`p${j}`, 'activations', M * p.N * 4);
      matmulNf4Tiled(gpu, y, xT, p.Wq, p.absmax, undefined, M, p.N, K, { ...opts, kStep: other });
      return y;
    });
    const ref = Ns.map((N, j) => ({ Y: new Float32Array(M * N), ...w[j], N }));
    matmulNf4QkvRef(X, ref, M, K, opts);
    for (let j = 0; j < 3; j++) {
      const got = await gpu.readF32(parts[j].Y as never);
      assertClose(`y${j}`, got, ref[j].Y, TOL);
      expect(got).toEqual(await gpu.readF32(plain[j]));
    }
  });

  test.each([
    [5, 13, 67, 64, false, 16],
    [5, 13, 67, 64, false, 32],
    [70, 70, 40, 64, true, 32],
    [129, 9, 96, 32, false, 16],
    [66, 65, 100, 128, true, 32],
    [128, 64, 48, 64, false, 32],        // whole tiles: matmul_nf4 (K step 16) takes its bounds-free form
    [128, 64, 64, 64, false, 16],        // whole tiles: matmul_nf4 (K step 32) takes its bounds-free form
  ] as const)('gateup at M=%i F=%i K=%i blocksize=%i dq=%s K step %i: twin, and bit for bit matmul_nf4 ×2 + swiglu', async (M, F, K, blocksize, dq, kStep) => {
    const X = rand(M * K, 2 * M + K, -2, 2);
    const xT = gpu.tensor('x', 'activations', X);
    const gw = weights(F, K, blocksize, 1, dq), uw = weights(F, K, blocksize, 2, dq);
    const gate = { Wq: gpu.tensor('wg', 'weights', gw.Wq), absmax: gpu.tensor('ag', 'weights', gw.absmax) };
    const up = { Wq: gpu.tensor('wu', 'weights', uw.Wq), absmax: gpu.tensor('au', 'weights', uw.absmax) };
    const opts = { blocksize, doubleQuant: dq };
    const other = { ...opts, kStep: (48 - kStep) as NF4KStep };
    const t = (name: string) => gpu.tensor(name, 'activations', M * F * 4);
    const [gT, uT, mT, gP, uP, mP] = ['g', 'u', 'm', 'g.plain', 'u.plain', 'm.plain'].map(t);
    matmulNf4GateUp(gpu, gT, uT, mT, xT, gate, up, M, F, K, { ...opts, kStep });
    matmulNf4Tiled(gpu, gP, xT, gate.Wq, gate.absmax, undefined, M, F, K, other);
    matmulNf4Tiled(gpu, uP, xT, up.Wq, up.absmax, undefined, M, F, K, other);
    swigluForward(gpu, mP, gP, uP, M, F);
    const G = new Float32Array(M * F), U = new Float32Array(M * F), Mo = new Float32Array(M * F);
    matmulNf4GateUpRef(G, U, Mo, X, gw, uw, M, F, K, opts);
    for (const [name, got, ref, plain] of [['g', gT, G, gP], ['u', uT, U, uP], ['m', mT, Mo, mP]] as const) {
      const v = await gpu.readF32(got);
      assertClose(name, v, ref, TOL);
      expect(v).toEqual(await gpu.readF32(plain));
    }
  });

  // qkv stages two 64×TK tiles (17.1 KiB at TK = 32), gateup three (25.1 KiB): each takes the
  // 32-step form only where the device's workgroup memory holds it.
  test.each([
    [16384, 16, 16],
    [24576, 32, 16],
    [32768, 32, 32],
  ])('with %i bytes of workgroup memory qkv takes K step %i, gateup %i', (mem, qkvStep, gateupStep) => {
    const { gpu: counting } = countingGpu({ ...COUNTING_LIMITS, maxComputeWorkgroupStorageSize: mem });
    const seen = recordDispatches(counting);
    const t = (n: number) => counting.tensor('t', 'scratch', n * 4);
    const part = () => ({ Y: t(128 * 64), Wq: t(64 * 8), absmax: t(64), N: 64 });
    matmulNf4Qkv(counting, t(128 * 64), [part(), part(), part()], 128, 64);
    matmulNf4GateUp(counting, t(128 * 64), t(128 * 64), t(128 * 64), t(128 * 64), part(), part(), 128, 64, 64);
    const key = (name: string) => seen.find((d) => d.name === name)?.key;
    expect(key('matmul_nf4_fused.qkv')).toContain(`"TK":${qkvStep}`);
    expect(key('matmul_nf4_fused.gateup')).toContain(`"TK":${gateupStep}`);
  });

  test('tiles are dealt per linear; outputs must not overlap nor be read', () => {
    expect(qkvTiles(512, [2048, 512, 512])).toEqual([8 * 32, 8 * 8, 8 * 8]);
    const x = gpu.tensor('x', 'activations', 64), w = gpu.tensor('w', 'weights', 64), y = gpu.tensor('y', 'activations', 64);
    const part = { Y: y, Wq: w, absmax: w, N: 1 };
    expect(() => matmulNf4Qkv(gpu, x, [part, part, part], 8, 2)).toThrow(/overlap/);
    expect(() => matmulNf4Qkv(gpu, y, [{ ...part, Y: gpu.tensor('a', 'activations', 64) }, { ...part, Y: gpu.tensor('b', 'activations', 64) }, part], 8, 2)).toThrow(/shares a buffer with an input/);
  });
});
