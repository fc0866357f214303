// The fused decode projections against their twin (ragged shapes, both entry points, DQ) and bit for
// bit against the unfused kernels they replace (matvec_nf4 ×3; rmsnorm, matvec_nf4 ×2, swiglu).
import { describe, expect, test } from 'vitest';
import { grid, type Gpu } from '../gpu/runtime.ts';
import shader from '../../shaders/matvec_nf4_fused.wgsl?raw';
import { reductionKernel } from './subgroups.ts';
import { assertClose, rand } from '../testing/compare.ts';
import { doubleQuantWords, packWords, quantizeNF4 } from '../quant/nf4.ts';
import { matvecNf4Qkv, matvecNf4Swiglu, qkvLaunch, swigluLaunch } from './matvec_nf4_fused.ts';
import { matvecNf4QkvRef, matvecNf4SwigluRef } from './matvec_nf4_fused.ref.ts';
import { matvecNf4 } from './matvec_nf4.ts';
import { rmsnormForward } from './rmsnorm_forward.ts';
import { swigluForward } from './swiglu_forward.ts';
import { devicesPerPath, REDUCTION_PATHS } from '../testing/gpu-paths.ts';

const TOL = { atol: 1e-5, rtol: 1e-4 };

function weights(N: number, K: number, blocksize: number, seed: number, dq: boolean): { Wq: Uint32Array; absmax: Float32Array | Uint32Array } {
  const { packed, absmax } = quantizeNF4(rand(N * K, seed + N * K, -0.2, 0.2), blocksize);
  return { Wq: packWords(packed, N * K), absmax: dq ? doubleQuantWords(absmax) : absmax };
}

// The reduction (and the norm prologue, as rmsnorm_forward) follows the device's path: both paths
// are tested.
const onPath = devicesPerPath();

describe('matvec_nf4_fused qkv', () => {
  // Scalar entry: K = 67 (blocks cross rows, rows start mid-word) and N·K odd; vec4 entry: K = 96
  // (64-blocks cross rows) and 1280 (more chunks than lanes), blocksize 32; N of each linear ragged
  // against a workgroup's columns (and one linear smaller than a workgroup); M = 1..4; every mix
  // of accumulating and writing outputs; double-quantized absmax.
  test.each([
    [1, [17, 5, 9], 67, 0b101, 64, false],
    [3, [33, 9, 9], 67, 0b010, 64, true],
    [4, [40, 8, 24], 96, 0b000, 64, false],
    [2, [17, 3, 17], 1280, 0b111, 64, true],
    [1, [64, 16, 16], 640, 0b101, 32, false],
  ] as const)('M=%i N=%j K=%i acc=%i blocksize=%i dq=%s: twin, and bit for bit three matvec_nf4 (both reduction paths)', async (M, Ns, K, acc, blocksize, dq) => {
    for (const path of REDUCTION_PATHS) {
      const gpu = onPath[path];
      const X = rand(M * K, M + K, -1, 1);
      const xT = gpu.tensor('x', 'activations', X);
      const w = Ns.map((N, j) => weights(N, K, blocksize, j, dq));
      const y0 = Ns.map((N, j) => rand(M * N, 9 + j, -1, 1));
      const fused = Ns.map((N, j) => ({
        Y: gpu.tensor(`y${j}`, 'activations', y0[j]), Wq: gpu.tensor(`w${j}`, 'weights', w[j].Wq),
        absmax: gpu.tensor(`a${j}`, 'weights', w[j].absmax), N, accumulate: ((acc >> j) & 1) === 1,
      })) as unknown as Parameters<typeof matvecNf4Qkv>[2];
      const opts = { blocksize, doubleQuant: dq };
      matvecNf4Qkv(gpu, xT, fused, M, K, opts);
      const plain = fused.map((p, j) => {
        const y = gpu.tensor(`p${j}`, 'activations', y0[j]);
        matvecNf4(gpu, y, xT, p.Wq, p.absmax, undefined, M, p.N, K, { ...opts, accumulate: p.accumulate });
        return y;
      });
      const ref = Ns.map((N, j) => ({ Y: y0[j].slice(), Wq: w[j].Wq, absmax: w[j].absmax, N, accumulate: ((acc >> j) & 1) === 1 }));
      matvecNf4QkvRef(X, ref, M, K, opts);
      for (let j = 0; j < 3; j++) {
        const got = await gpu.readF32(fused[j].Y as never);
        assertClose(`y${j}`, got, ref[j].Y, TOL);
        expect(got, path).toEqual(await gpu.readF32(plain[j]));
      }
    }
  });

  test('the subgroup path\'s fallback numbering (SG_REDUCE = false) gives the workgroup path\'s sums bit for bit', async () => {
    const M = 2, Ns = [40, 9, 24], K = 1280;
    const X = rand(M * K, 5, -1, 1);
    const w = Ns.map((N, j) => weights(N, K, 64, j, false));
    const run = async (g: Gpu, extra: Record<string, boolean>) => {
      const ys = Ns.map((N, j) => g.tensor(`y${j}`, 'activations', M * N * 4));
      const parts = Ns.map((N, j) => ({ Y: ys[j], Wq: g.tensor(`w${j}`, 'weights', w[j].Wq), absmax: g.tensor(`a${j}`, 'weights', w[j].absmax), N }));
      const { entry, overrides, uniform, workgroups } = qkvLaunch(M, K, parts as never);
      const k = reductionKernel(g, 'matvec_nf4_fused', shader, { entry, overrides: { ...overrides, ...extra } });
      g.dispatch(k, [...ys, g.tensor('x', 'activations', X), ...parts.map((q) => q.Wq), ...parts.map((q) => q.absmax)], uniform, grid(workgroups));
      return Promise.all(ys.map((y) => g.readF32(y)));
    };
    expect(await run(onPath.subgroups, { SG_REDUCE: false })).toEqual(await run(onPath.workgroup, {}));
  });

  test('workgroups are dealt per linear; entries by K', () => {
    const part = (N: number) => ({ N }) as never;
    expect(qkvLaunch(1, 2048, [part(2048), part(512), part(512)])).toMatchObject({ entry: 'qkv', workgroups: 256 + 64 + 64 });
    expect(qkvLaunch(1, 67, [part(17), part(5), part(9)]).entry).toBe('qkv_scalar');
    expect(() => qkvLaunch(5, 64, [part(1), part(1), part(1)])).toThrow(/expected 1 to 4 rows/);
  });
});

describe('matvec_nf4_fused swiglu', () => {
  // With and without the RMSNorm prologue, scalar (K = 67) and vec4 (K = 96, 1280; blocksize 32)
  // entries, F ragged against a workgroup's columns, M = 1..4, double-quantized absmax.
  test.each([
    [1, 13, 67, true, 64, false],
    [3, 5, 67, false, 64, true],
    [4, 37, 96, true, 64, false],
    [2, 9, 1280, true, 64, true],
    [2, 70, 640, false, 32, false],
  ] as const)('M=%i F=%i K=%i norm=%s blocksize=%i dq=%s: twin, and bit for bit the unfused kernels (both reduction paths)', async (M, F, K, withNorm, blocksize, dq) => {
    for (const path of REDUCTION_PATHS) {
      const gpu = onPath[path];
      const X = rand(M * K, 3 * M + K, -2, 2);
      const normW = rand(K, K + 1, 0.5, 1.5);
      const gw = weights(F, K, blocksize, 1, dq), uw = weights(F, K, blocksize, 2, dq);
      const xT = gpu.tensor('x', 'activations', X), nT = gpu.tensor('normw', 'weights', normW);
      const gate = { Wq: gpu.tensor('wg', 'weights', gw.Wq), absmax: gpu.tensor('ag', 'weights', gw.absmax), N: F };
      const up = { Wq: gpu.tensor('wu', 'weights', uw.Wq), absmax: gpu.tensor('au', 'weights', uw.absmax), N: F };
      const opts = { blocksize, doubleQuant: dq }, eps = 1e-5;
      const yT = gpu.tensor('y', 'activations', M * F * 4);
      matvecNf4Swiglu(gpu, yT, xT, gate, up, M, F, K, withNorm ? { w: nT, eps } : undefined, opts);
      // The unfused path: [x2 = rmsnorm(x)], g, u = matvec_nf4, m = swiglu(g, u).
      let x2 = xT;
      if (withNorm) {
        x2 = gpu.tensor('x2', 'activations', M * K * 4);
        rmsnormForward(gpu, x2, gpu.tensor('rstd', 'activations', M * 4), xT, nT, M, K, eps);
      }
      const gT = gpu.tensor('g', 'activations', M * F * 4), uT = gpu.tensor('u', 'activations', M * F * 4), mT = gpu.tensor('m', 'activations', M * F * 4);
      matvecNf4(gpu, gT, x2, gate.Wq, gate.absmax, undefined, M, F, K, opts);
      matvecNf4(gpu, uT, x2, up.Wq, up.absmax, undefined, M, F, K, opts);
      swigluForward(gpu, mT, gT, uT, M, F);
      const y = new Float32Array(M * F);
      matvecNf4SwigluRef(y, X, gw, uw, M, F, K, withNorm ? { w: normW, eps } : undefined, opts);
      const got = await gpu.readF32(yT);
      assertClose('m', got, y, TOL);
      expect(got, path).toEqual(await gpu.readF32(mT));
    }
  });

  test('one column of gate and up per group; entries by K', () => {
    expect(swigluLaunch(1, 8192, 2048, { eps: 1e-5 })).toMatchObject({ entry: 'swiglu', workgroups: 8192 / 4, overrides: { NORM: true } });
    expect(swigluLaunch(1, 13, 67, undefined)).toMatchObject({ entry: 'swiglu_scalar', overrides: { NORM: false } });
  });
});
