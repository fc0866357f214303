import shader from '../../shaders/matmul_nf4.wgsl?raw';
import { grid, params, type Binding, type Gpu } from '../gpu/runtime.ts';
import { NF4_BLOCKSIZE } from '../quant/nf4.ts';
import { MATVEC_NF4_MAX_M, matvecNf4 } from './matvec_nf4.ts';

const TM = 64, TN = 64;

export interface MatmulNf4Options {
  /** Y += X·Wᵀ (+ bias) instead of Y = ... */
  accumulate?: boolean;
  blocksize?: number;
  /** absmax is the double-quantized words of src/quant/nf4.ts packDoubleQuant, not f32. */
  doubleQuant?: boolean;
  /** false: take the bounds-checked form even where the shape fits the tiles (tests compare the two). */
  fit?: boolean;
  /** The K step (16 or 32); default: nf4KStep's choice for the device (tests run both forms). */
  kStep?: NF4KStep;
}

export type NF4KStep = 16 | 32;

/** The shapes the tiled NF4 kernels run without bounds checks: whole 64×64 tiles, whole K steps. */
export const nf4TilesFit = (M: number, N: number, K: number, kStep: NF4KStep): boolean =>
  M % TM === 0 && N % TN === 0 && K % kStep === 0;

/** Workgroup memory of a tiled NF4 kernel staging `tiles` 64-row f32 tiles of `kStep` k: the tiles,
 *  the 16-entry NF4 table and the 256-entry dynamic map (declared whether or not DQ fills it). */
export const nf4TileBytes = (tiles: number, kStep: number): number => tiles * kStep * 64 * 4 + 16 * 4 + 256 * 4;

/**
 * The K step of a tiled NF4 kernel staging `tiles` tiles: 32 (half the barriers and loop overhead
 * per k) where the device's workgroup memory holds it, else 16 (fits the portable 16 KiB). A
 * requested step must fit.
 */
export function nf4KStep(gpu: Gpu, tiles: number, name: string, requested?: NF4KStep): NF4KStep {
  const mem = gpu.limits.maxComputeWorkgroupStorageSize;
  if (requested !== undefined) {
    if (requested !== 16 && requested !== 32) throw new RangeError(`${name}: K step ${requested} is not 16 or 32`);
    if (nf4TileBytes(tiles, requested) > mem) {
      throw new RangeError(`${name}: K step ${requested} needs ${nf4TileBytes(tiles, requested)} bytes of workgroup memory; the device has ${mem}`);
    }
    return requested;
  }
  return nf4TileBytes(tiles, 32) <= mem ? 32 : 16;
}

/**
 * Y (M, N) = X (M, K) · dequant(W)ᵀ (+ bias (N)), W (N, K) NF4-packed (`Wq` u32 words + f32 absmax,
 * or double-quantized absmax words with opts.doubleQuant).
 * Pass `bias` undefined for a Linear without bias.
 */
export function matmulNf4(
  gpu: Gpu, Y: Binding, X: Binding, Wq: Binding, absmax: Binding, bias: Binding | undefined,
  M: number, N: number, K: number, opts: MatmulNf4Options = {},
): void {
  // Decode: with a few token rows the 64×64 tile would decode every weight for 60+ dead rows;
  // matvec_nf4 reads and decodes each weight once with the K reduction spread over the workgroup.
  if (M >= 1 && M <= MATVEC_NF4_MAX_M) {
    matvecNf4(gpu, Y, X, Wq, absmax, bias, M, N, K, opts);
    return;
  }
  matmulNf4Tiled(gpu, Y, X, Wq, absmax, bias, M, N, K, opts);
}

/** matmulNf4() without the matrix-vector route: always the tiled kernel (tests compare the two). */
export function matmulNf4Tiled(
  gpu: Gpu, Y: Binding, X: Binding, Wq: Binding, absmax: Binding, bias: Binding | undefined,
  M: number, N: number, K: number, opts: MatmulNf4Options = {},
): void {
  const bs = opts.blocksize ?? NF4_BLOCKSIZE;
  // The shader's 4-code decode needs 4 aligned codes inside one NF4 block.
  if (bs % 4 !== 0) throw new RangeError(`matmul_nf4: blocksize ${bs} is not a multiple of 4`);
  const tk = nf4KStep(gpu, 2, 'matmul_nf4', opts.kStep);
  const k = gpu.kernel('matmul_nf4', shader, {
    overrides: {
      ACCUMULATE: opts.accumulate ?? false, HAS_BIAS: bias !== undefined, BS: bs, DQ: opts.doubleQuant ?? false,
      FIT: (opts.fit ?? true) && nf4TilesFit(M, N, K, tk), TK: tk,
    },
  });
  const tiles = Math.ceil(M / TM) * Math.ceil(N / TN);
  // The WGSL reads `bias` only under `if (HAS_BIAS)`, but it is still statically used, so the 'auto'
  // layout wants binding 5 either way. Without a bias we bind absmax there: read-only aliases are
  // legal, and the pipeline compiled with HAS_BIAS = false never reads it.
  gpu.dispatch(k, [Y, X, Wq, absmax, bias ?? absmax], params([M, N, K]), grid(tiles));
}
