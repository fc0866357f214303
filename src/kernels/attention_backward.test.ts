import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Gpu } from '../gpu/runtime.ts';
import { assertClose, finiteDifference, goldenArray, loadGolden, rand } from '../testing/compare.ts';
import { attentionBackward } from './attention_backward.ts';
import { attentionBackwardRef } from './attention_backward.ref.ts';
import { attentionForwardRef } from './attention_forward.ref.ts';
import type { AttentionTiles } from './attention_forward.ts';
import { exampleSpans, packedPositions, sliceTokens } from '../testing/packed-rows.ts';

const TOL = { atol: 2e-5, rtol: 2e-4 };

describe('attention_backward twin', () => {
  const golden = loadGolden('attention');
  test.each(Object.keys(golden))('matches PyTorch autograd: %s', (name) => {
    const c = golden[name];
    const [B, T, H, Hkv, D] = [c.B, c.T, c.H, c.Hkv, c.D] as number[];
    const dq = new Float32Array(B * T * H * D), dk = new Float32Array(B * T * Hkv * D), dv = new Float32Array(dk.length);
    attentionBackwardRef(
      dq, dk, dv, goldenArray(c.do), goldenArray(c.q), goldenArray(c.k), goldenArray(c.v), B, T, H, Hkv, D, c.scale as number,
    );
    assertClose(`${name}.dq`, dq, goldenArray(c.dq), TOL);
    assertClose(`${name}.dk`, dk, goldenArray(c.dk), TOL);
    assertClose(`${name}.dv`, dv, goldenArray(c.dv), TOL);
  });

  test.each([[0, 0], [2, 0], [0, 0.8], [2, 0.8]])('matches finite differences (GQA, B=2, sliding window %i, softcap %f)', (window, softcap) => {
    const B = 2, T = 5, H = 4, Hkv = 2, D = 3, scale = 0.7;
    const nq = B * T * H * D, nk = B * T * Hkv * D;
    const q = rand(nq, 21, -2, 2), k = rand(nk, 22, -2, 2), v = rand(nk, 23), dO = rand(nq, 24);
    // L(q, k, v) = sum(attention(q, k, v) * dO) in float64, written out independently of both twins;
    // x = [q, k, v] flattened.
    const loss = (x: Float64Array) => {
      let L = 0;
      const s = new Float64Array(T);
      for (let b = 0; b < B; b++) {
        for (let h = 0; h < H; h++) {
          const g = Math.floor(h / (H / Hkv));
          for (let t = 0; t < T; t++) {
            const qi = ((b * T + t) * H + h) * D;
            let sum = 0;
            const lo = window > 0 ? Math.max(0, t - window + 1) : 0;
            for (let j = lo; j <= t; j++) {
              const kj = ((b * T + j) * Hkv + g) * D;
              let dot = 0;
              for (let d = 0; d < D; d++) dot += x[qi + d] * x[nq + kj + d];
              s[j] = Math.exp(softcap > 0 ? softcap * Math.tanh((dot * scale) / softcap) : dot * scale);
              sum += s[j];
            }
            for (let j = lo; j <= t; j++) {
              const vj = nq + nk + ((b * T + j) * Hkv + g) * D;
              for (let d = 0; d < D; d++) L += (s[j] / sum) * x[vj + d] * dO[qi + d];
            }
          }
        }
      }
      return L;
    };
    const dq = new Float32Array(nq), dk = new Float32Array(nk), dv = new Float32Array(nk);
    attentionBackwardRef(dq, dk, dv, dO, q, k, v, B, T, H, Hkv, D, scale, window, undefined, softcap);
    const x = new Float64Array(nq + 2 * nk);
    x.set(q);
    x.set(k, nq);
    x.set(v, nq + nk);
    const analytic = new Float64Array(x.length);
    analytic.set(dq);
    analytic.set(dk, nq);
    analytic.set(dv, nq + nk);
    // Some of q (first and last rows, both batches), k (key 0 serves every query; the last key one),
    // and v, in both KV heads.
    const idx = [0, 5, 13, 59, 60, 119, nq, nq + 4, nq + 27, nq + 59, nq + nk, nq + nk + 8, nq + nk + 31, nq + 2 * nk - 1];
    expect(finiteDifference(loss, x, analytic, idx)).toEqual([]);
  });
});

describe('attention_backward twin on packed rows', () => {
  test.each([[0, 0], [2, 0], [2, 0.8]])('each packed example gets the gradients it gets alone (window %i, softcap %f)', (window, softcap) => {
    const rows = [[3, 5, 1], [4, 4]];
    const [B, T, H, Hkv, D] = [2, 10, 4, 2, 8];
    const nq = B * T * H * D, nk = B * T * Hkv * D;
    const q = rand(nq, 31, -2, 2), k = rand(nk, 32, -2, 2), v = rand(nk, 33), dO = rand(nq, 34);
    const dq = new Float32Array(nq), dk = new Float32Array(nk), dv = new Float32Array(nk);
    attentionBackwardRef(dq, dk, dv, dO, q, k, v, B, T, H, Hkv, D, 0.5, window, packedPositions(rows, T), softcap);
    for (const [b, t0, n] of exampleSpans(rows)) {
      const cut = (x: Float32Array, heads: number) => sliceTokens(x, T, heads * D, b, t0, n);
      const dqe = new Float32Array(n * H * D), dke = new Float32Array(n * Hkv * D), dve = new Float32Array(n * Hkv * D);
      attentionBackwardRef(dqe, dke, dve, cut(dO, H), cut(q, H), cut(k, Hkv), cut(v, Hkv), 1, n, H, Hkv, D, 0.5, window, undefined, softcap);
      expect(cut(dq, H)).toEqual(dqe);
      expect(cut(dk, Hkv)).toEqual(dke);
      expect(cut(dv, Hkv)).toEqual(dve);
    }
  });
});

describe('attention_backward kernel', () => {
  let gpu: Gpu;
  beforeAll(async () => {
    gpu = await Gpu.create();
  });
  afterAll(() => gpu?.destroy());

  // [B, T, H, Hkv, D, tiles]: as in the forward test. T = 70 and 33 are ragged against 64-row blocks
  // and 32-row tiles; rows 8 / tile 5 gives several key blocks per dkv dispatch, each starting its
  // query loop mid-tile. The last column is the sliding window (0 = none), shorter than T so the dq
  // loop starts mid-tile and the dkv loop ends before T: as in the forward test.
  // The dk/dv blocking (eighth column, default 16 keys x 8 queries) is ragged against T too: 3 keys x
  // 5 queries starts query tiles mid-block and ends them past T; D = 40 and 24 leave some threads of
  // a key row one vec4 short (KT = 3 and 2 threads over 10 and 6 vec4). A ninth column is the score
  // softcap (Gemma 2), small enough that most scores saturate its tanh.
  type Dkv = { keys?: number; queries?: number } | undefined;
  const cases: [number, number, number, number, number, Partial<AttentionTiles> | undefined, number, Dkv, number?][] = [
    [1, 5, 2, 2, 8, undefined, 0, undefined],
    [2, 70, 4, 2, 24, undefined, 0, undefined],
    [1, 33, 3, 1, 40, { rows: 8, tile: 5 }, 0, { keys: 3, queries: 5 }],
    [2, 19, 2, 1, 64, undefined, 0, undefined],
    [2, 70, 4, 2, 24, undefined, 20, undefined],
    [1, 33, 3, 1, 40, { rows: 8, tile: 5 }, 7, { keys: 3, queries: 5 }],
    [1, 9, 2, 2, 8, { rows: 4, tile: 2 }, 1, { keys: 2, queries: 1 }],
    [1, 41, 4, 2, 128, undefined, 9, undefined],
    [2, 70, 4, 2, 24, undefined, 0, undefined, 1.5],
    [1, 33, 3, 1, 40, { rows: 8, tile: 5 }, 7, { keys: 3, queries: 5 }, 1.5],
  ];
  test.each(cases)('equals its twin at B=%i T=%i H=%i Hkv=%i D=%i tiles=%o window=%i dkv=%o softcap=%s', async (B, T, H, Hkv, D, tiles, window, dkv, softcap = 0) => {
    const seed = B * 7 + T * 11 + H * 13 + D;
    const nq = B * T * H * D, nk = B * T * Hkv * D;
    const q = rand(nq, seed, -2, 2), k = rand(nk, seed + 1, -2, 2), v = rand(nk, seed + 2), dO = rand(nq, seed + 3);
    const scale = 1 / Math.sqrt(D);
    const o = new Float32Array(nq), lse = new Float32Array(B * H * T);
    attentionForwardRef(o, lse, q, k, v, B, T, H, Hkv, D, scale, window, undefined, softcap);
    const dqT = gpu.tensor('dq', 'activations', nq * 4);
    const dkT = gpu.tensor('dk', 'activations', nk * 4), dvT = gpu.tensor('dv', 'activations', nk * 4);
    const t = (label: string, a: Float32Array) => gpu.tensor(label, 'activations', a);
    attentionBackward(
      gpu, dqT, dkT, dvT, t('dO', dO), t('q', q), t('k', k), t('v', v), t('o', o), t('lse', lse),
      B, T, H, Hkv, D, scale, tiles, window, undefined, dkv, softcap,
    );
    const dq = new Float32Array(nq), dk = new Float32Array(nk), dv = new Float32Array(nk);
    attentionBackwardRef(dq, dk, dv, dO, q, k, v, B, T, H, Hkv, D, scale, window, undefined, softcap);
    assertClose('dq', await gpu.readF32(dqT), dq, TOL);
    assertClose('dk', await gpu.readF32(dkT), dk, TOL);
    assertClose('dv', await gpu.readF32(dvT), dv, TOL);
  });

  // Packed rows, as in the forward test: [B, T, H, Hkv, D, tiles, window, example lengths per row],
  // then optionally the dk/dv blocking and a score softcap: the last case has every mask at once
  // (packed examples, a window, the softcap) over ragged dk/dv blocks.
  const packedCases: [number, number, number, number, number, Partial<AttentionTiles> | undefined, number, number[][], Dkv?, number?][] = [
    [2, 10, 4, 2, 8, undefined, 0, [[3, 5, 1], [4, 4]]],
    [1, 33, 3, 1, 40, { rows: 8, tile: 5 }, 0, [[1, 7, 12, 2, 9]]],
    [1, 33, 3, 1, 40, { rows: 8, tile: 5 }, 4, [[1, 7, 12, 2, 9]]],
    [2, 70, 4, 2, 24, undefined, 20, [[30, 25, 15], [1, 1, 64]]],
    [1, 33, 3, 1, 40, { rows: 8, tile: 5 }, 4, [[1, 7, 12, 2, 9]], { keys: 3, queries: 5 }, 1.5],
  ];
  test.each(packedCases)('packed rows equal the twin at B=%i T=%i H=%i Hkv=%i D=%i tiles=%o window=%i lengths=%o dkv=%o softcap=%s', async (B, T, H, Hkv, D, tiles, window, rows, dkv, softcap = 0) => {
    const seed = B * 5 + T * 3 + H + D;
    const nq = B * T * H * D, nk = B * T * Hkv * D;
    const q = rand(nq, seed, -2, 2), k = rand(nk, seed + 1, -2, 2), v = rand(nk, seed + 2), dO = rand(nq, seed + 3);
    const positions = packedPositions(rows, T);
    const o = new Float32Array(nq), lse = new Float32Array(B * H * T);
    attentionForwardRef(o, lse, q, k, v, B, T, H, Hkv, D, 0.5, window, positions, softcap);
    const dqT = gpu.tensor('dq', 'activations', nq * 4);
    const dkT = gpu.tensor('dk', 'activations', nk * 4), dvT = gpu.tensor('dv', 'activations', nk * 4);
    const t = (label: string, a: Float32Array | Uint32Array) => gpu.tensor(label, 'activations', a);
    attentionBackward(
      gpu, dqT, dkT, dvT, t('dO', dO), t('q', q), t('k', k), t('v', v), t('o', o), t('lse', lse),
      B, T, H, Hkv, D, 0.5, tiles, window, t('positions', positions), dkv, softcap,
    );
    const dq = new Float32Array(nq), dk = new Float32Array(nk), dv = new Float32Array(nk);
    attentionBackwardRef(dq, dk, dv, dO, q, k, v, B, T, H, Hkv, D, 0.5, window, positions, softcap);
    assertClose('dq', await gpu.readF32(dqT), dq, TOL);
    assertClose('dk', await gpu.readF32(dkT), dk, TOL);
    assertClose('dv', await gpu.readF32(dvT), dv, TOL);
  });
});
