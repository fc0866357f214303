import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Gpu } from '../gpu/runtime.ts';
import { assertClose, rand, randInts } from '../testing/compare.ts';
import { embedding, embeddingChunks, embeddingViews, uploadEmbedding } from './embedding.ts';
import { embeddingRef } from './embedding.ref.ts';
import { packF16, unpackF16 } from './matmul_packed_f16.ref.ts';

const MiB = 1 << 20;

describe('embedding chunk plan', () => {
  test('splits a 152k vocabulary at 128 MiB into 5 chunks of 37376 rows', () => {
    const chunks = embeddingChunks(151936, 896, { maxStorageBufferBindingSize: 128 * MiB, maxBufferSize: 256 * MiB });
    expect(chunks.map((c) => c.rows)).toEqual([37376, 37376, 37376, 37376, 2432]);
    expect(chunks.map((c) => c.row0)).toEqual([0, 37376, 74752, 112128, 149504]);
  });

  test('every chunk fits the binding, chunks tile the table, aligned offsets from 128 rows up', () => {
    for (const [V, C, limit] of [[128256, 2048, 128 * MiB], [49152, 576, 64 * MiB], [30, 5, 140], [1000, 3, 2000]]) {
      const chunks = embeddingChunks(V, C, { maxStorageBufferBindingSize: limit, maxBufferSize: 4096 * MiB });
      let next = 0;
      for (const ch of chunks) {
        expect(ch.row0).toBe(next);
        expect(ch.rows * C * 4).toBeLessThanOrEqual(limit);
        if (chunks[0].rows >= 128) expect((ch.row0 * C * 4) % 256).toBe(0);
        next += ch.rows;
      }
      expect(next).toBe(V);
    }
  });

  test('refuses a row wider than a binding', () => {
    expect(() => embeddingChunks(10, 100, { maxStorageBufferBindingSize: 256, maxBufferSize: 256 })).toThrow(RangeError);
  });
});

describe('embedding kernel', () => {
  let gpu: Gpu;
  beforeAll(async () => {
    gpu = await Gpu.create();
  });
  afterAll(() => gpu?.destroy());

  // [N, C, V, binding limit in bytes (0 = the device's), chunk tensors or views into one tensor]
  test.each([
    [9, 5, 30, 140, 'tensors'], // 7 rows per chunk: 5 chunks, the last ragged
    [40, 64, 1000, 200 * 256, 'tensors'], // 200 rows fit, rounded to 128: 8 chunks
    [23, 3, 300, 136 * 12, 'views'], // 128-row chunks as 256-aligned views into one buffer
    [17, 131, 50, 0, 'tensors'], // one chunk; C not a multiple of the 64-thread workgroup
    [1, 1, 1, 0, 'tensors'],
    [66_000, 1, 10, 24, 'tensors'], // more rows than one grid dimension holds: the 2-D workgroup grid
    [9, 5, 30, 140, 'tensors', 25.25], // Gemma's sqrt(640) normalizer in bf16 scales every row
  ])('equals its twin at N=%i C=%i V=%i limit=%i (%s) scale=%s', async (N, C, V, limit, kind, scale = 1) => {
    const E = rand(V * C, V + C);
    const ids = randInts(N, V, N + V);
    if (N > 3) {
      ids[1] = V - 1;
      ids[2] = V; // out of range: zeros
      ids[3] = 0xffffffff;
    }
    const limits = limit ? { maxStorageBufferBindingSize: limit, maxBufferSize: gpu.limits.maxBufferSize } : gpu.limits;
    const chunks = embeddingChunks(V, C, limits);
    if (limit) expect(chunks.length).toBeGreaterThan(1);
    const table = kind === 'views'
      ? embeddingViews(gpu.tensor('E', 'weights', E), V, C, chunks, gpu.limits.minStorageBufferOffsetAlignment)
      : uploadEmbedding(gpu, 'E', E, V, C, chunks);
    const xT = gpu.tensor('x', 'activations', rand(N * C, 77)); // garbage: every row must be written
    const idsT = gpu.tensor('ids', 'activations', ids);
    const before = gpu.counters.dispatches;
    embedding(gpu, xT, idsT, table, N, scale);
    expect(gpu.counters.dispatches - before).toBe(chunks.length);
    const x = new Float32Array(N * C);
    embeddingRef(x, ids, E, N, C, V, scale);
    assertClose('x', await gpu.readF32(xT), x, { atol: 0, rtol: 0 });
  });

  // f16 storage: packed pairs, rows starting mid-word (odd C), chunk views whose last one ends on a
  // half word, chunk tensors. The gather copies the f16 values exactly.
  test.each([
    [9, 5, 30, 140, 'tensors'], // 14 rows per 140-byte chunk at 2 bytes: 3 chunks, odd C
    [23, 3, 301, 136 * 6, 'views'], // 128-row chunks of 3 f16 as 768-byte aligned views; 301·3 is odd
    [17, 131, 50, 0, 'views'], // one chunk; odd C, odd V·C
    [40, 64, 1000, 200 * 128, 'tensors'],
    [17, 131, 50, 0, 'views', 8], // a scaled gather (Gemma's normalizer)
  ])('f16 storage equals its twin on the f16 table at N=%i C=%i V=%i limit=%i (%s) scale=%s', async (N, C, V, limit, kind, scale = 1) => {
    const E = rand(V * C, V + C + 1, -3, 3);
    const packed = packF16(E);
    const ids = randInts(N, V, N + V + 1);
    ids[0] = V - 1;
    if (N > 3) ids[2] = V; // out of range: zeros
    const limits = limit ? { maxStorageBufferBindingSize: limit, maxBufferSize: gpu.limits.maxBufferSize } : gpu.limits;
    const chunks = embeddingChunks(V, C, limits, 2);
    if (limit) expect(chunks.length).toBeGreaterThan(1);
    const table = kind === 'views'
      ? embeddingViews(gpu.tensor('E16', 'weights', packed), V, C, chunks, gpu.limits.minStorageBufferOffsetAlignment, true)
      : uploadEmbedding(gpu, 'E16', E, V, C, chunks, true);
    const xT = gpu.tensor('x', 'activations', rand(N * C, 78));
    embedding(gpu, xT, gpu.tensor('ids', 'activations', ids), table, N, scale);
    const x = new Float32Array(N * C);
    embeddingRef(x, ids, unpackF16(packed, V * C), N, C, V, scale);
    assertClose('x', await gpu.readF32(xT), x, { atol: 0, rtol: 0 });
  });
});
