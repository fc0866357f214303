import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Gpu } from '../gpu/runtime.ts';
import { assertClose, goldenArray, loadGolden, rand } from '../testing/compare.ts';
import { attentionForward, type AttentionTiles } from './attention_forward.ts';
import { attentionForwardRef } from './attention_forward.ref.ts';
import { exampleSpans, packedPositions, sliceTokens } from '../testing/packed-rows.ts';

const TOL = { atol: 2e-5, rtol: 1e-4 };

describe('attention_forward twin', () => {
  const golden = loadGolden('attention');
  test.each(Object.keys(golden))('matches PyTorch (HF eager attention): %s', (name) => {
    const c = golden[name];
    const [B, T, H, Hkv, D] = [c.B, c.T, c.H, c.Hkv, c.D] as number[];
    const o = new Float32Array(B * T * H * D), lse = new Float32Array(B * H * T);
    attentionForwardRef(o, lse, goldenArray(c.q), goldenArray(c.k), goldenArray(c.v), B, T, H, Hkv, D, c.scale as number);
    assertClose(`${name}.o`, o, goldenArray(c.o), TOL);
    assertClose(`${name}.lse`, lse, goldenArray(c.lse), TOL);
  });
});

describe('attention_forward twin with a sliding window', () => {
  const [B, T, H, Hkv, D] = [2, 9, 4, 2, 8];
  const q = rand(B * T * H * D, 5, -2, 2), k = rand(B * T * Hkv * D, 6, -2, 2), v = rand(B * T * Hkv * D, 7);
  const run = (window: number) => {
    const o = new Float32Array(q.length), lse = new Float32Array(B * H * T);
    attentionForwardRef(o, lse, q, k, v, B, T, H, Hkv, D, 0.5, window);
    return { o, lse };
  };
  test('a window of T or more is full causal attention', () => {
    expect(run(T)).toEqual(run(0));
    expect(run(T + 5)).toEqual(run(0));
  });
  test('a window of 1 lets each query see only its own key: o = v of its KV head', () => {
    const { o } = run(1);
    for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) for (let h = 0; h < H; h++) for (let d = 0; d < D; d++) {
      expect(o[((b * T + t) * H + h) * D + d]).toBeCloseTo(v[((b * T + t) * Hkv + Math.floor(h / 2)) * D + d], 6);
    }
  });
  test('a window of W: query t ignores keys before t - W + 1 (changing them changes nothing)', () => {
    const W = 3;
    const before = run(W);
    // Key/value rows 0 .. T-1-W are outside the window of the last query; scramble them.
    const saved = [k.slice(), v.slice()];
    for (let b = 0; b < B; b++) for (let j = 0; j <= T - 1 - W; j++) {
      k.fill(7, (b * T + j) * Hkv * D, (b * T + j + 1) * Hkv * D);
      v.fill(-7, (b * T + j) * Hkv * D, (b * T + j + 1) * Hkv * D);
    }
    const after = run(W);
    k.set(saved[0]);
    v.set(saved[1]);
    const last = (o: Float32Array, b: number) => o.slice(((b * T + T - 1) * H) * D, (b * T + T) * H * D);
    for (let b = 0; b < B; b++) expect(last(after.o, b)).toEqual(last(before.o, b));
    expect(after.o).not.toEqual(before.o); // earlier queries do see the scrambled rows
  });
});

describe('attention_forward twin on packed rows', () => {
  // Two rows of T = 10: examples of 3, 5 and 1 tokens (one token left as padding), and 4 and 4 (two).
  const rows = [[3, 5, 1], [4, 4]];
  const [B, T, H, Hkv, D] = [2, 10, 4, 2, 8];
  const q = rand(B * T * H * D, 15, -2, 2), k = rand(B * T * Hkv * D, 16, -2, 2), v = rand(B * T * Hkv * D, 17);
  const positions = packedPositions(rows, T);
  test.each([[0, 0], [2, 0], [2, 0.8]])('each packed example equals that example run alone (window %i, softcap %f)', (window, softcap) => {
    const o = new Float32Array(q.length), lse = new Float32Array(B * H * T);
    attentionForwardRef(o, lse, q, k, v, B, T, H, Hkv, D, 0.5, window, positions, softcap);
    for (const [b, t0, n] of exampleSpans(rows)) {
      const oe = new Float32Array(n * H * D), lsee = new Float32Array(H * n);
      attentionForwardRef(oe, lsee, sliceTokens(q, T, H * D, b, t0, n), sliceTokens(k, T, Hkv * D, b, t0, n),
        sliceTokens(v, T, Hkv * D, b, t0, n), 1, n, H, Hkv, D, 0.5, window, undefined, softcap);
      expect(sliceTokens(o, T, H * D, b, t0, n)).toEqual(oe);
      for (let h = 0; h < H; h++) expect(lse.slice((b * H + h) * T + t0, (b * H + h) * T + t0 + n)).toEqual(lsee.slice(h * n, (h + 1) * n));
    }
  });
  test('positions 0 .. T-1 in every row (one example per row) are plain causal attention', () => {
    const run = (pos?: Uint32Array) => {
      const o = new Float32Array(q.length), lse = new Float32Array(B * H * T);
      attentionForwardRef(o, lse, q, k, v, B, T, H, Hkv, D, 0.5, 0, pos);
      return { o, lse };
    };
    expect(run(packedPositions([[T], [T]], T))).toEqual(run());
    expect(run(positions)).not.toEqual(run());
  });
});

describe('attention_forward kernel', () => {
  let gpu: Gpu;
  beforeAll(async () => {
    gpu = await Gpu.create();
  });
  afterAll(() => gpu?.destroy());

  // [B, T, H, Hkv, D, tiles]. Default tiles are 64 query rows and up to 32 staged keys; T = 70 and 33
  // are not multiples of either, D = 24 and 40 are not powers of two, Hkv = 1 is MQA, H/Hkv = 2 GQA.
  // Small explicit tiles push tiny T through many query blocks and key tiles (a partial last one),
  // and H = 66 000 heads need more workgroups than one grid dimension holds. The last column is the
  // sliding window (0 = none): windows shorter than T that start mid-tile and mid-block, a window of
  // 1 (each query sees only itself), and one of T - 1. A seventh column is the score softcap
  // (Gemma 2), small enough that most scores saturate its tanh.
  const cases: [number, number, number, number, number, Partial<AttentionTiles> | undefined, number, number?][] = [
    [1, 5, 2, 2, 8, undefined, 0],
    [2, 70, 4, 2, 24, undefined, 0],
    [1, 33, 3, 1, 40, { rows: 8, tile: 5 }, 0],
    [2, 19, 2, 1, 128, undefined, 0],
    [1, 3, 66_000, 1, 4, { rows: 4, tile: 2 }, 0],
    [2, 70, 4, 2, 24, undefined, 20],
    [1, 33, 3, 1, 40, { rows: 8, tile: 5 }, 7],
    [1, 9, 2, 2, 8, { rows: 4, tile: 2 }, 1],
    [2, 19, 2, 1, 16, { rows: 8, tile: 3 }, 18],
    [2, 70, 4, 2, 24, undefined, 0, 1.5],
    [1, 33, 3, 1, 40, { rows: 8, tile: 5 }, 7, 1.5],
  ];
  test.each(cases)('equals its twin at B=%i T=%i H=%i Hkv=%i D=%i tiles=%o window=%i softcap=%s', async (B, T, H, Hkv, D, tiles, window, softcap = 0) => {
    const seed = B * 7 + T * 11 + H * 13 + D;
    const q = rand(B * T * H * D, seed, -2, 2), k = rand(B * T * Hkv * D, seed + 1, -2, 2);
    const v = rand(B * T * Hkv * D, seed + 2);
    const scale = 1 / Math.sqrt(D);
    const oT = gpu.tensor('o', 'activations', q.byteLength);
    const lseT = gpu.tensor('lse', 'activations', B * H * T * 4);
    attentionForward(
      gpu, oT, lseT, gpu.tensor('q', 'activations', q), gpu.tensor('k', 'activations', k),
      gpu.tensor('v', 'activations', v), B, T, H, Hkv, D, scale, tiles, window, undefined, softcap,
    );
    const o = new Float32Array(q.length), lse = new Float32Array(B * H * T);
    attentionForwardRef(o, lse, q, k, v, B, T, H, Hkv, D, scale, window, undefined, softcap);
    assertClose('o', await gpu.readF32(oT), o, TOL);
    assertClose('lse', await gpu.readF32(lseT), lse, TOL);
    expect(gpu.counters.dispatches).toBeGreaterThan(0);
  });

  // Packed rows: [B, T, H, Hkv, D, tiles, window, example lengths per row]. Examples start mid-tile and
  // mid-block, span several key tiles and query blocks, a 1-token example sits between longer ones,
  // and rows end in padding (position 0: a padding token sees only itself). An optional last column
  // is a score softcap, so one case has every mask at once (packed examples, a window, the softcap).
  const packedCases: [number, number, number, number, number, Partial<AttentionTiles> | undefined, number, number[][], number?][] = [
    [2, 10, 4, 2, 8, undefined, 0, [[3, 5, 1], [4, 4]]],
    [1, 33, 3, 1, 40, { rows: 8, tile: 5 }, 0, [[1, 7, 12, 2, 9]]],
    [1, 33, 3, 1, 40, { rows: 8, tile: 5 }, 4, [[1, 7, 12, 2, 9]]],
    [2, 70, 4, 2, 24, undefined, 20, [[30, 25, 15], [1, 1, 64]]],
    [1, 33, 3, 1, 40, { rows: 8, tile: 5 }, 4, [[1, 7, 12, 2, 9]], 1.5],
  ];
  test.each(packedCases)('packed rows equal the twin at B=%i T=%i H=%i Hkv=%i D=%i tiles=%o window=%i lengths=%o softcap=%s', async (B, T, H, Hkv, D, tiles, window, rows, softcap = 0) => {
    const seed = B * 5 + T * 3 + H + D;
    const q = rand(B * T * H * D, seed, -2, 2), k = rand(B * T * Hkv * D, seed + 1, -2, 2), v = rand(B * T * Hkv * D, seed + 2);
    const positions = packedPositions(rows, T);
    const oT = gpu.tensor('o', 'activations', q.byteLength), lseT = gpu.tensor('lse', 'activations', B * H * T * 4);
    attentionForward(
      gpu, oT, lseT, gpu.tensor('q', 'activations', q), gpu.tensor('k', 'activations', k), gpu.tensor('v', 'activations', v),
      B, T, H, Hkv, D, 0.5, tiles, window, gpu.tensor('positions', 'activations', positions), softcap,
    );
    const o = new Float32Array(q.length), lse = new Float32Array(B * H * T);
    attentionForwardRef(o, lse, q, k, v, B, T, H, Hkv, D, 0.5, window, positions, softcap);
    assertClose('o', await gpu.readF32(oT), o, TOL);
    assertClose('lse', await gpu.readF32(lseT), lse, TOL);
  });

  test('rejects a head dim that is not a multiple of 4', () => {
    const t = gpu.tensor('x', 'scratch', 4);
    expect(() => attentionForward(gpu, t, t, t, t, t, 1, 1, 1, 1, 6)).toThrow(RangeError);
  });
});
