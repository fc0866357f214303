import shader from '../../shaders/embedding.wgsl?raw';
import { grid, params, type Binding, type Gpu, type Tensor } from '../gpu/runtime.ts';
import { packF16 } from './matmul_packed_f16.ref.ts';

const WG = 64;

/** Rows row0 .. row0+rows-1 of an embedding table (V, C). */
export interface EmbeddingChunk {
  row0: number;
  rows: number;
}

/** A (V, C) table on the GPU as chunks, each bound by one dispatch. */
export interface EmbeddingTable {
  V: number;
  C: number;
  /** Stored as f16 pairs in u32 words (packF16) instead of f32. */
  f16?: boolean;
  chunks: (EmbeddingChunk & { E: Binding })[];
}

type ChunkLimits = Pick<GPUSupportedLimits, 'maxStorageBufferBindingSize' | 'maxBufferSize'>;

/**
 * How to split a table (V, C) of `bytes`-byte elements (4: f32, 2: f16) so that every chunk fits
 * one storage binding.
 *
 * Policy: rows per chunk = floor(min(maxStorageBufferBindingSize, maxBufferSize) / (bytes·C)), rounded
 * down to a multiple of 128 when a chunk holds at least 128 rows; the last chunk takes the rest.
 * Each chunk is meant to be its own tensor (uploadEmbedding): a whole table may exceed maxBufferSize
 * too (545 MB for Qwen2.5-0.5B against a 256 MiB default), and a loader fills chunk by chunk anyway.
 * The multiple of 128 keeps chunk boundaries on whole output tiles of the tied lm_head matmul (64
 * wide, docs/kernels.md#dense-matmuls; real vocabularies such as 151936 and 128256 divide by 128), and
 * because 128 * 4C (or 2C) bytes is a multiple of 256, the same boundaries also work as 256-byte aligned
 * views into one buffer when the whole table fits in one (embeddingViews).
 * Example: V=151936, C=896 at 128 MiB gives 37376 rows per chunk, 5 chunks.
 */
export function embeddingChunks(V: number, C: number, limits: ChunkLimits, bytes: 2 | 4 = 4): EmbeddingChunk[] {
  const maxBytes = Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
  let per = Math.floor(maxBytes / (bytes * C));
  if (per < 1) throw new RangeError(`embedding: one row of ${bytes * C} bytes exceeds the ${maxBytes}-byte binding limit`);
  if (per >= 128) per -= per % 128;
  const chunks: EmbeddingChunk[] = [];
  for (let row0 = 0; row0 < V; row0 += per) chunks.push({ row0, rows: Math.min(per, V - row0) });
  return chunks;
}

/** Upload E (V, C) as one tensor per chunk (category 'weights'), labelled `label[i]`; with f16 each
 *  chunk is rounded to f16 and packed (packF16). */
export function uploadEmbedding(
  gpu: Gpu, label: string, E: Float32Array, V: number, C: number, chunks = embeddingChunks(V, C, gpu.limits), f16 = false,
): EmbeddingTable {
  return {
    V, C, f16,
    chunks: chunks.map((ch, i) => {
      const rows = E.subarray(ch.row0 * C, (ch.row0 + ch.rows) * C);
      return { ...ch, E: gpu.tensor(`${label}[${i}]`, 'weights', f16 ? packF16(rows) : rows) };
    }),
  };
}

/** The same chunks as views into one tensor holding the whole table; offsets must be 256-aligned.
 *  With f16 the table is packed f16 pairs: a view covers its rows rounded up to whole words (only
 *  the last chunk can hold an odd element count, and the table is padded to a word). */
export function embeddingViews(
  table: Tensor, V: number, C: number, chunks: EmbeddingChunk[], alignment = 256, f16 = false,
): EmbeddingTable {
  const bytes = f16 ? 2 : 4;
  return {
    V, C, f16,
    chunks: chunks.map((ch) => {
      const offset = ch.row0 * C * bytes;
      if (offset % alignment !== 0) throw new RangeError(`embedding: chunk at row ${ch.row0} starts at byte ${offset}, not a multiple of ${alignment}`);
      return { ...ch, E: { tensor: table, offset, size: Math.ceil((ch.rows * C * bytes) / 4) * 4 } };
    }),
  };
}

/**
 * x = E[ids] · scale (widened to f32 when E is f16), one dispatch per chunk of E. x: (N, C); ids: (N) u32. Ids >= V give zero rows
 * (validated upstream; this only keeps the read in bounds). scale is Gemma's embedding normalizer.
 */
export function embedding(gpu: Gpu, x: Binding, ids: Binding, table: EmbeddingTable, N: number, scale = 1): void {
  const k = gpu.kernel('embedding', shader, { entry: table.f16 ? 'main_f16' : 'main', overrides: { WG } });
  for (const ch of table.chunks) {
    gpu.dispatch(k, [x, ids, ch.E], params([N, table.C, table.V, ch.row0, ch.rows], [scale]), grid(N));
  }
}
