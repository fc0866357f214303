import shader from '../../shaders/lora_forward.wgsl?raw';
import { reductionKernel } from './subgroups.ts';
import { grid, params, type Binding, type Gpu, type View } from '../gpu/runtime.ts';

/** This module's kernels on the device's reduction path (decode_qkv reduces its norm as
 *  rmsnorm_forward does: with subgroups where the device has them). */
const loraKernel = (gpu: Gpu, opts: Parameters<typeof reductionKernel>[3]) => reductionKernel(gpu, 'lora_forward', shader, opts);

/** x (M, K), A (R, K), B (N, R), Y (M, N), U (M, R). */
export interface LoraDims {
  M: number;
  N: number;
  K: number;
  R: number;
}

export interface LoraOptions {
  /** PEFT's scaling, alpha / R or alpha / sqrt(R) with rsLoRA: loraScaling in src/model/lora.ts. */
  scale: number;
  /** Dropout probability on the LoRA branch input, in [0, 1). Default 0 (identity). */
  dropout?: number;
  /** Dropout seed; use a distinct one per (step, micro-batch, module): the backward needs the same. */
  seed?: number;
  /** Or the seed as seeds.table[seeds.index] (u32), a table of per-step seeds the caller rewrites each
   *  step (Gpu.scalars): the uniform then never changes, nor the bind groups. Wins over `seed`. */
  seeds?: { table: Binding; index: number };
  /** Inference: nothing reads U back. With at most 4 rows, R <= 64 and no dropout, the branch is then
   *  one dispatch (entry `decode`) and U is not written. */
  noU?: boolean;
}

/** The seed table binding and the uniform fields of lora_forward.wgsl and lora_backward.wgsl (same
 *  Params struct). A bare `seed` goes into a one-entry table of its own. */
export function loraBindings(gpu: Gpu, d: LoraDims, o: LoraOptions): { seeds: Binding; u: ArrayBuffer } {
  const seeds = o.seeds ?? { table: gpu.scalars('lora.seed', Uint32Array.of((o.seed ?? 0) >>> 0)), index: 0 };
  return { seeds: seeds.table, u: loraParams(d, { ...o, seedIndex: seeds.index }) };
}

/** The dropout's uniform fields: keep iff hash >= keepThreshold (probability 1 - p), kept values times invKeep. */
export function dropoutUniforms(p: number): { keepThreshold: number; invKeep: number } {
  if (!(p >= 0 && p < 1)) throw new RangeError(`lora: dropout ${p} is outside [0, 1)`);
  return { keepThreshold: Math.min(0xffffffff, Math.floor(p * 2 ** 32)), invKeep: 1 / (1 - p) };
}

/** The shared uniform of lora_forward.wgsl and lora_backward.wgsl (same Params struct). */
export function loraParams(d: LoraDims, o: LoraOptions & { seedIndex: number }): ArrayBuffer {
  const { keepThreshold, invKeep } = dropoutUniforms(o.dropout ?? 0);
  return params([d.M, d.N, d.K, d.R, o.seedIndex, keepThreshold], [invKeep, o.scale]);
}

/** Outputs per thread along each tile axis: TM = TN = 4, consts in both WGSL files. */
const PER_THREAD = 4;

// Tile shapes (threads WX x WY, PER_THREAD x PER_THREAD outputs each): narrow along R for the rank-R output, square
// for the (M, N) output. BK is the reduction chunk staged in workgroup memory.
export const NARROW = { WX: 4, WY: 16, BK: 32 } as const; // 64 x 16 tile, 64 threads, 10 KiB
export const SQUARE = { WX: 16, WY: 16, BK: 16 } as const; // 64 x 64 tile, 256 threads, 8 KiB

/** Workgroups for a (rows, cols) output tiled by `t`. */
export function tiles(rows: number, cols: number, t: { WX: number; WY: number }): [number, number] {
  return grid(Math.ceil(rows / (t.WY * PER_THREAD)) * Math.ceil(cols / (t.WX * PER_THREAD)));
}

/**
 * Y (M, N) += scale · (dropout(x) · Aᵀ) · Bᵀ, saving U = dropout(x) · Aᵀ (M, R) for the backward
 * (unless o.noU applies). Y must already hold the base layer's output.
 */
export function loraForward(
  gpu: Gpu, Y: Binding, U: Binding, x: Binding, A: Binding, B: Binding, d: LoraDims, o: LoraOptions,
): void {
  const { u } = loraBindings(gpu, d, o);
  if (o.noU && d.M <= 4 && d.R <= 64 && !(o.dropout ?? 0)) {
    const fused = loraKernel(gpu, { entry: 'decode' });
    gpu.dispatch(fused, [Y, undefined, x, A, B], u, grid(Math.ceil(d.N / 64)));
    return;
  }
  loraDown(gpu, U, x, A, d, o);
  const up = loraKernel(gpu, { entry: 'up', overrides: SQUARE });
  gpu.dispatch(up, [Y, U, undefined, undefined, B], u, tiles(d.M, d.N, SQUARE));
}

/** One projection of loraForwardQkv: its output (M, N) and its A (R, K), B (N, R) as views of the
 *  LoRA parameter buffer; undefined for a projection without an adapter. */
export interface LoraQkvSlot {
  Y: Binding;
  A: View;
  B: View;
  N: number;
}

/**
 * Decoding (M <= 4, no dropout), one dispatch: x1 = rmsnorm(h; w, eps), written for the base
 * projections, and Y_j = scale · (x1 · A_jᵀ) · B_jᵀ for each of q, k, v with an adapter (assigned: the
 * base projection adds into Y_j afterwards). `outputs` are the three projections' outputs (bound
 * whether or not they have an adapter). Equal to rmsnormForward, then loraForward's `decode` onto a
 * zero Y.
 */
export function loraForwardQkv(
  gpu: Gpu, outputs: [Binding, Binding, Binding], slots: [LoraQkvSlot | undefined, LoraQkvSlot | undefined, LoraQkvSlot | undefined],
  x1: Binding, h: Binding, w: Binding, d: { M: number; K: number; R: number }, o: { scale: number; eps: number },
): void {
  if (!(d.M >= 1 && d.M <= 4 && d.R >= 1 && d.R <= 64)) throw new RangeError(`lora_forward decode_qkv: M = ${d.M}, R = ${d.R}; expected M <= 4, R <= 64`);
  const live = slots.filter((s) => s !== undefined);
  if (live.length === 0) throw new RangeError('lora_forward decode_qkv: no projection has an adapter');
  const P = live[0].A.tensor;
  const off = (v: View, what: string) => {
    if (v.tensor !== P || v.offset % 4) throw new RangeError(`lora_forward decode_qkv: ${what} is not a view of the one parameter buffer`);
    return v.offset / 4;
  };
  const N = slots.map((s) => s?.N ?? 0);
  const wgs = N.map((n) => Math.ceil(n / 64));
  const offs = slots.flatMap((s, j) => (s ? [off(s.A, `A${j}`), off(s.B, `B${j}`)] : [0, 0]));
  const u = new ArrayBuffer(64), U32 = new Uint32Array(u), F32 = new Float32Array(u);
  U32.set([d.M, d.K, d.R]);
  F32[3] = o.eps;
  F32[4] = o.scale;
  U32.set([N[0], N[1], N[2], wgs[0], wgs[1], ...offs], 5);
  const k = loraKernel(gpu, { entry: 'decode_qkv' });
  gpu.dispatch(k, [outputs[0], outputs[1], h, undefined, undefined, undefined, outputs[2], w, P, x1], u, grid(wgs[0] + wgs[1] + wgs[2]));
}

/** The first stage alone: U (M, R) = dropout(x) · Aᵀ (entry `down`); loraUpQkv adds the second. */
export function loraDown(gpu: Gpu, U: Binding, x: Binding, A: Binding, d: LoraDims, o: LoraOptions): void {
  const { seeds, u } = loraBindings(gpu, d, o);
  const down = loraKernel(gpu, { entry: 'down', overrides: NARROW });
  gpu.dispatch(down, [undefined, U, x, A, undefined, seeds], u, tiles(d.M, d.R, NARROW));
}

/** One projection of loraUpQkv: its U (M, R) from loraDown, its B (N, R) as a view of the LoRA
 *  parameter buffer; undefined for a projection without an adapter. */
export interface LoraUpSlot {
  U: Binding;
  B: View;
  N: number;
}

/**
 * The second stage of up to three adapters in one dispatch (entry `up_qkv`): Y_j += scale · U_j ·
 * B_jᵀ for each projection j with a slot. `outputs` are the three projections' outputs, bound
 * whether or not they have an adapter. Bit-identical to loraForward's `up` on each.
 */
export function loraUpQkv(
  gpu: Gpu, outputs: [Binding, Binding, Binding], slots: [LoraUpSlot | undefined, LoraUpSlot | undefined, LoraUpSlot | undefined],
  d: { M: number; R: number }, o: { scale: number },
): void {
  const live = slots.filter((s) => s !== undefined);
  if (live.length === 0) throw new RangeError('lora_forward up_qkv: no projection has an adapter');
  const P = live[0].B.tensor;
  const N = slots.map((s) => s?.N ?? 0);
  const t = N.map((n) => (n ? Math.ceil(d.M / (SQUARE.WY * PER_THREAD)) * Math.ceil(n / (SQUARE.WX * PER_THREAD)) : 0));
  const offB = slots.map((s, j) => {
    if (!s) return 0;
    if (s.B.tensor !== P || s.B.offset % 4) throw new RangeError(`lora_forward up_qkv: B${j} is not a view of the one parameter buffer`);
    return s.B.offset / 4;
  });
  const u = new ArrayBuffer(48), U32 = new Uint32Array(u), F32 = new Float32Array(u);
  U32.set([d.M, d.R]);
  F32[2] = o.scale;
  U32.set([N[0], N[1], N[2], t[0], t[1], ...offB], 3);
  // A projection without an adapter reads no U: another's stands in (read-only aliases are legal).
  const U = slots.map((s) => s?.U ?? live[0].U);
  const k = loraKernel(gpu, { entry: 'up_qkv', overrides: SQUARE });
  gpu.dispatch(k, [outputs[0], outputs[1], undefined, undefined, undefined, undefined, outputs[2], undefined, P, undefined, U[0], U[1], U[2]], u, grid(t[0] + t[1] + t[2]));
}

/** One adapter of loraDownQkv: its A (R, K) as a view of the LoRA parameter buffer, its U (M, R) as a
 *  view of the one buffer all the slots' U live in, and the index of its dropout seed in the table;
 *  undefined for a projection without an adapter. */
export interface LoraDownSlot {
  A: View;
  U: View;
  seedIndex: number;
}

/**
 * The first stage of up to three adapters sharing x (q, k, v) in one dispatch (entry `down_qkv`):
 * U_j (M, R) = dropout_j(x) · A_jᵀ, each with its own seed from `seeds.table`. Bit-identical to
 * loraDown on each.
 */
export function loraDownQkv(
  gpu: Gpu, x: Binding, slots: [LoraDownSlot | undefined, LoraDownSlot | undefined, LoraDownSlot | undefined],
  d: { M: number; K: number; R: number }, o: { dropout?: number; seeds: { table: Binding } },
): void {
  const live = slots.filter((s) => s !== undefined);
  if (live.length === 0) throw new RangeError('lora_forward down_qkv: no projection has an adapter');
  const P = live[0].A.tensor, Ug = live[0].U.tensor;
  const off = (v: View, t: View['tensor'], what: string) => {
    if (v.tensor !== t || v.offset % 4) throw new RangeError(`lora_forward down_qkv: ${what} is not a view of the one ${t === P ? 'parameter' : 'U'} buffer`);
    return v.offset / 4;
  };
  const T = Math.ceil(d.M / (NARROW.WY * PER_THREAD)) * Math.ceil(d.R / (NARROW.WX * PER_THREAD));
  const { keepThreshold, invKeep } = dropoutUniforms(o.dropout ?? 0);
  const A = [0, 0, 0], U = [0, 0, 0], S = [0, 0, 0];
  slots.forEach((s, j) => {
    if (!s) return;
    const i = live.indexOf(s);
    A[i] = off(s.A, P, `A${j}`);
    U[i] = off(s.U, Ug, `U${j}`);
    S[i] = s.seedIndex;
  });
  const u = new ArrayBuffer(64), U32 = new Uint32Array(u), F32 = new Float32Array(u);
  U32.set([d.M, d.K, d.R, keepThreshold]);
  F32[4] = invKeep;
  U32.set([T, live.length, ...A, ...U, ...S], 5);
  const k = loraKernel(gpu, { entry: 'down_qkv', overrides: NARROW });
  gpu.dispatch(k, [undefined, undefined, x, undefined, undefined, o.seeds.table, undefined, undefined, P, undefined, undefined, undefined, undefined, Ug], u,
    grid(T * live.length));
}
