import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Gpu } from '../gpu/runtime.ts';
import { ShaderCompileError } from '../errors.ts';
import { assertClose, assertEqualInts, goldenArray, loadGolden, rand } from '../testing/compare.ts';
import shader from '../../shaders/matmul_f16.wgsl?raw';
import { MATMUL_TILE, type MatmulOptions } from './matmul.ts';
import { matmulAuto, matmulF16, matmulStorage } from './matmul_f16.ts';
import { GpuFeatureMissingError } from '../errors.ts';
import { f16BitsToF32, f32ToF16Bits, matmulF16Ref, toF16 } from './matmul_f16.ref.ts';
import { matmulRef } from './matmul.ref.ts';

const VARIANTS: [boolean, boolean][] = [[false, false], [false, true], [true, false], [true, true]];

describe('f16 conversion (twin helper)', () => {
  test.each([
    [0, 0x0000], [-0, 0x8000], [1, 0x3c00], [-2, 0xc000], [0.1, 0x2e66], [0.5, 0x3800],
    [65504, 0x7bff], // largest finite
    [65519, 0x7bff], // just under the tie with 65536
    [65520, 0x7c00], // the tie rounds to even, which is 2^16: infinity
    [1e9, 0x7c00], [-1e9, 0xfc00], [Infinity, 0x7c00], [-Infinity, 0xfc00],
    [2 ** -14, 0x0400], // smallest normal
    [2 ** -14 - 2 ** -24, 0x03ff], // largest subnormal
    [2 ** -24, 0x0001], // smallest subnormal
    [2 ** -25, 0x0000], // tie between 0 and 2^-24: even is 0
    [3 * 2 ** -25, 0x0002], // tie between 1 and 2 units: even is 2
    [2 ** -25 * (1 + 2 ** -23), 0x0001], // just past the tie
    [2 ** -26, 0x0000], [-(2 ** -30), 0x8000],
    [1 + 2 ** -11, 0x3c00], // tie: even mantissa 0
    [1 + 3 * 2 ** -11, 0x3c02], // tie: even mantissa 2
    [1 + 2 ** -11 + 2 ** -20, 0x3c01],
    [2 ** -14 - 2 ** -25, 0x0400], // tie at the subnormal/normal border rounds up to the normal
  ])('f32ToF16Bits(%d) = %i', (x, bits) => {
    expect(f32ToF16Bits(x)).toBe(bits);
  });

  test('NaN stays NaN', () => {
    const h = f32ToF16Bits(NaN);
    expect((h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0).toBe(true);
    expect(f16BitsToF32(h)).toBeNaN();
  });

  test('every finite and infinite f16 survives f16 -> f32 -> f16', () => {
    for (let h = 0; h < 0x10000; h++) {
      if ((h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0) continue; // NaN payloads are not preserved
      if (f32ToF16Bits(f16BitsToF32(h)) !== h) throw new Error(`0x${h.toString(16)} round-trips to 0x${f32ToF16Bits(f16BitsToF32(h)).toString(16)}`);
    }
  });

  test('rounds to the nearest f16, ties to even, over random magnitudes', () => {
    const u = rand(20_000, 77), s = rand(20_000, 78, -26, 17);
    for (let i = 0; i < u.length; i++) {
      const x = Math.fround(u[i] * 2 ** Math.floor(s[i]));
      const h = f32ToF16Bits(x), y = f16BitsToF32(h);
      if (!Number.isFinite(y)) continue; // overflow is covered above
      // Neighbours one unit away in the bit pattern (same sign) must not be closer.
      for (const nb of [h - 1, h + 1]) {
        if ((nb & 0x7fff) >= 0x7c00 || (nb & 0x8000) !== (h & 0x8000) || nb < 0) continue;
        const z = f16BitsToF32(nb), dy = Math.abs(x - y), dz = Math.abs(x - z);
        if (dz < dy || (dz === dy && (h & 1) === 1)) throw new Error(`${x}: chose 0x${h.toString(16)}, 0x${nb.toString(16)} is nearer or even`);
      }
    }
  });

  test("matches torch's .half() bit for bit (golden)", () => {
    const g = loadGolden('matmul').f16;
    const x = goldenArray(g.x);
    assertEqualInts('x16', Array.from(x, f32ToF16Bits), goldenArray(g.x16_bits));
  });
});

describe('matmul_f16 twin', () => {
  test('matches torch on f16-rounded operands (NT)', () => {
    const g = loadGolden('matmul').f16;
    const M = g.M as number, N = g.N as number, K = g.K as number;
    const c = new Float32Array(M * N);
    matmulF16Ref(c, goldenArray(g.a), goldenArray(g.b), M, N, K, { transB: true });
    assertClose('c_nt', c, goldenArray(g.c_nt), { atol: 1e-5, rtol: 1e-5 });
  });

  test.each(VARIANTS)('stays within f16 rounding of the f32 twin, transA=%s transB=%s', (transA, transB) => {
    const M = 9, N = 11, K = 40;
    const a = rand(M * K, 1), b = rand(K * N, 2);
    const c16 = new Float32Array(M * N), c32 = new Float32Array(M * N);
    matmulF16Ref(c16, a, b, M, N, K, { transA, transB });
    matmulRef(c32, a, b, M, N, K, { transA, transB });
    // Each operand moves by at most 2^-11 relative, so each |product| by at most 2^-10 (+2^-22):
    // with |a|, |b| < 1 the sum moves by less than K·2^-10·1.01.
    assertClose('c', c16, c32, { atol: K * 2 ** -10 * 1.01, rtol: 0 });
    expect(c16).not.toEqual(c32); // the rounding did happen
  });
});

describe('matmul_f16 kernel', () => {
  let gpu: Gpu;
  // Dawn's null backend executes nothing but runs the full WGSL front end (Tint) and pipeline
  // validation, and it offers shader-f16. It is how this file compiles the f16 kernel on a machine
  // whose real adapter (SwiftShader) has no shader-f16.
  let validator: Gpu;
  beforeAll(async () => {
    gpu = await Gpu.create();
    const specifier = 'webgpu';
    const { create } = (await import(/* @vite-ignore */ specifier)) as { create: (flags: string[]) => GPU };
    const adapter = await create(['backend=null']).requestAdapter();
    if (!adapter?.features.has('shader-f16')) throw new Error("Dawn's null backend should offer shader-f16");
    const device = await adapter.requestDevice({ requiredFeatures: ['shader-f16'], label: 'matmul_f16.validator' });
    validator = new Gpu({
      device,
      adapterInfo: { vendor: 'null', architecture: '', device: '', description: 'Dawn null backend' },
      features: { f16: true, subgroups: false, timestampQuery: false },
      adapterFeatures: ['shader-f16'],
      requestedLimits: {},
    });
  });
  afterAll(() => {
    gpu?.destroy();
    validator?.destroy();
  });

  test('compiles for every layout and accumulate flag (null backend, shader-f16 on)', async () => {
    const { BM, BN, BK } = MATMUL_TILE;
    for (const [transA, transB] of VARIANTS) {
      for (const accumulate of [false, true]) {
        validator.kernel('matmul_f16', shader, { overrides: { BM, BN, BK, TRANS_A: transA, TRANS_B: transB, ACCUMULATE: accumulate } });
      }
    }
    await validator.check();
    // The host path records a dispatch with f16 bindings; validation of the bind group runs too.
    const c = validator.tensor('c', 'activations', 5 * 7 * 4);
    matmulF16(validator, c, validator.tensor('a', 'activations', 5 * 3 * 2), validator.tensor('b', 'weights', 3 * 7 * 2), 5, 7, 3);
    validator.flush();
    await validator.check();
  });

  test('the null-backend check does catch a broken f16 shader', async () => {
    // Negative control: storing an f16 into an f32 variable without a conversion is a type error.
    const broken = shader.replace('fn aAt(e: u32) -> f32 { return f32(a[e]); }', 'fn aAt(e: u32) -> f32 { return a[e]; }');
    expect(broken).not.toBe(shader);
    validator.kernel('matmul_f16_broken', broken, { overrides: { ...MATMUL_TILE } });
    await expect(validator.check()).rejects.toBeInstanceOf(ShaderCompileError);
  });

  test.each([
    [1, 1, 1],
    [37, 53, 29],
    [65, 1, 130],
    [64, 64, 64],
  ])('on this device: runs and equals its twin when shader-f16 exists, else refuses and matmulAuto falls back to f32 (M=%i N=%i K=%i)', async (M, N, K) => {
    for (const [transA, transB] of VARIANTS) {
      const opts: MatmulOptions = { transA, transB, accumulate: transA, alpha: transB ? 0.5 : 1 };
      const a = rand(M * K, M + K), b = rand(K * N, N + K), c0 = rand(M * N, M + N);
      const cT = gpu.tensor('c', 'activations', c0);
      const c = c0.slice();
      if (gpu.features.f16) {
        expect(matmulStorage(gpu)).toBe('f16');
        matmulAuto(gpu, 'f16', cT, gpu.tensor('a', 'activations', toF16(a)), gpu.tensor('b', 'weights', toF16(b)), M, N, K, opts);
        matmulF16Ref(c, a, b, M, N, K, opts);
      } else {
        expect(matmulStorage(gpu)).toBe('f32');
        const aT = gpu.tensor('a', 'activations', toF16(a)), bT = gpu.tensor('b', 'weights', toF16(b));
        expect(() => matmulF16(gpu, cT, aT, bT, M, N, K, opts)).toThrow(GpuFeatureMissingError);
        expect(() => matmulAuto(gpu, 'f16', cT, aT, bT, M, N, K, opts)).toThrow(/shader-f16/);
        matmulAuto(gpu, 'f32', cT, gpu.tensor('a', 'activations', a), gpu.tensor('b', 'weights', b), M, N, K, opts);
        matmulRef(c, a, b, M, N, K, opts);
      }
      assertClose(`c transA=${transA} transB=${transB}`, await gpu.readF32(cT), c, { atol: 2e-6 * Math.sqrt(K), rtol: 1e-5 });
    }
  });
});
