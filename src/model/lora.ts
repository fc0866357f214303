// LoRA adapter state on the GPU: one table of tensors (PEFT name → shape → offset) over four flat
// buffers (params, grads, Adam m, Adam v), so the optimizer and the gradient norm are one dispatch
// each, and reordering the table cannot break a parallel list.
import type { Gpu, Tensor, View } from '../gpu/runtime.ts';
import { UsageError } from '../errors.ts';
import { rng } from '../rng.ts';
import { ALL_MODULE_NAMES, type CheckpointModule, LINEAR_MODULES, linearShape, moduleOf, selectModules, type DecoderDims, type LinearModule } from '../io/hf-names.ts';
import { loraKey } from '../io/peft.ts';

/** The seven projections the engine computes. */
export const PROJS = LINEAR_MODULES;
export type Proj = LinearModule;
/** A module LoRA adapts, named as PEFT names it: a projection, or Phi-3's fused qkv_proj / gate_up_proj. */
export type LoraModule = CheckpointModule;

/** The dimensions LoRA needs from a model config. */
export type LoraModelDims = DecoderDims;

export interface LoraSpec {
  rank: number;
  alpha: number;
  dropout: number;
  rslora: boolean;
  /** Target names; selectModules maps them onto the model's own modules (hf-names.ts). */
  targets: LoraModule[];
}

/** The seed's recipe (r 8, alpha 32, dropout 0.05, q_proj and v_proj): the one set of LoRA defaults. */
export const DEFAULT_LORA: LoraSpec = { rank: 8, alpha: 32, dropout: 0.05, rslora: false, targets: ['q_proj', 'v_proj'] };

/** `--targets q_proj,v_proj` or `all-linear`. Phi-3's fused names are accepted on every model (see
 *  selectModules: on Phi-3 q_proj selects qkv_proj, elsewhere qkv_proj selects q_proj, k_proj, v_proj). */
export function parseTargets(s: string): LoraModule[] {
  if (s === 'all-linear') return [...PROJS];
  const out = s.split(',').map((x) => x.trim()).filter(Boolean);
  for (const t of out) {
    if (!(ALL_MODULE_NAMES as readonly string[]).includes(t)) {
      throw new UsageError(`Unknown LoRA target "${t}".`, `Use a comma-separated subset of ${ALL_MODULE_NAMES.join(', ')}, or all-linear.`, { target: t });
    }
  }
  if (out.length === 0) throw new UsageError('No LoRA targets given.', `Use e.g. q_proj,v_proj or all-linear.`);
  return out as LoraModule[];
}

/** PEFT's `scaling` (peft tuners/lora/layer.py, LoraLayer.update_layer): alpha / r, or alpha / sqrt(r)
 *  with rsLoRA. The one definition: kernels take the number, adapter files carry alpha and r. */
export function loraScaling(spec: Pick<LoraSpec, 'rank' | 'alpha' | 'rslora'>): number {
  return spec.rslora ? spec.alpha / Math.sqrt(spec.rank) : spec.alpha / spec.rank;
}

/** loraScaling of a PEFT adapter_config.json's fields (r, lora_alpha, use_rslora). */
export function peftScaling(cfg: { r: number; loraAlpha: number; useRslora?: boolean }): number {
  return loraScaling({ rank: cfg.r, alpha: cfg.loraAlpha, rslora: Boolean(cfg.useRslora) });
}

export interface LoraEntry {
  key: string;
  layer: number;
  proj: LoraModule;
  which: 'A' | 'B';
  /** [rows, cols]: A is (R, in), B is (out, R). */
  shape: [number, number];
  /** Offset in floats into each flat buffer; a multiple of 64 so views meet the 256-byte binding alignment. */
  offset: number;
  count: number;
}

export function loraTable(c: LoraModelDims, spec: LoraSpec): { entries: LoraEntry[]; totalFloats: number } {
  const entries: LoraEntry[] = [];
  let off = 0;
  const modules = selectModules(c, spec.targets);
  // A fused module's B is bound in row slices, one per projection (llama.ts): each must start on a
  // 256-byte boundary, which every published Phi-3 shape meets at any rank.
  if (c.fusedProjections) {
    for (const p of PROJS) {
      const { module, row } = moduleOf(c, p);
      if (modules.includes(module) && (row * spec.rank) % 64 !== 0) {
        throw new UsageError(`LoRA rank ${spec.rank} puts ${p}'s rows of ${module}.lora_B at float ${row * spec.rank}, off the 64-float alignment GPU bindings need.`,
          'Use a rank that is a multiple of 2, 4 or 8 (r 8 or 16 always works).', { target: module, rank: spec.rank });
      }
    }
  }
  for (let l = 0; l < c.numLayers; l++) {
    for (const p of modules) {
      const [out, inp] = linearShape(c, p);
      for (const [which, shape] of [['A', [spec.rank, inp]], ['B', [out, spec.rank]]] as const) {
        const count = shape[0] * shape[1];
        entries.push({ key: loraKey(l, p, which), layer: l, proj: p, which, shape: [shape[0], shape[1]], offset: off, count });
        off += Math.ceil(count / 64) * 64;
      }
    }
  }
  return { entries, totalFloats: Math.max(off, 64) };
}

/** Seeded uniform floats in [-bound, bound) for the A init; PEFT's kaiming_uniform_(a=sqrt(5)) bound is 1/sqrt(in). */
function uniform(n: number, seed: number, bound: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => r() * 2 * bound - bound);
}

export class LoraState {
  readonly entries: LoraEntry[];
  readonly byKey = new Map<string, LoraEntry>();
  readonly totalFloats: number;
  readonly params: Tensor;
  /** Gradients and Adam moments exist only when training. */
  readonly grads: Tensor;
  readonly m: Tensor;
  readonly v: Tensor;
  readonly training: boolean;
  /** Completed optimizer steps (torch's state['step']). */
  step = 0;

  /** `alloc` gives the planned buffers 'lora.params' and, when training, 'lora.grads', 'lora.adam_m',
   *  'lora.adam_v' (see plan.ts). */
  constructor(
    readonly gpu: Gpu,
    readonly dims: LoraModelDims,
    readonly spec: LoraSpec,
    alloc: (name: string) => Tensor,
    training: boolean,
  ) {
    const { entries, totalFloats } = loraTable(dims, spec);
    this.entries = entries;
    this.totalFloats = totalFloats;
    for (const e of entries) this.byKey.set(e.key, e);
    this.training = training;
    this.params = alloc('lora.params');
    // Inference needs no optimizer state; the fields then alias params and are never written.
    this.grads = training ? alloc('lora.grads') : this.params;
    this.m = training ? alloc('lora.adam_m') : this.params;
    this.v = training ? alloc('lora.adam_v') : this.params;
  }

  entry(layer: number, p: LoraModule, which: 'A' | 'B'): LoraEntry | undefined {
    return this.byKey.get(loraKey(layer, p, which));
  }

  view(t: Tensor, e: LoraEntry): View {
    return { tensor: t, offset: e.offset * 4, size: e.count * 4 };
  }

  /** PEFT's init: A kaiming-uniform (bound 1/sqrt(in_features)), B zero. Seeded: same seed, same A. */
  init(seed: number): void {
    const host = new Float32Array(this.totalFloats);
    this.entries.forEach((e, i) => {
      if (e.which === 'A') host.set(uniform(e.count, (seed * 7919 + i) >>> 0, 1 / Math.sqrt(e.shape[1])), e.offset);
    });
    this.gpu.upload(this.params, host);
    this.resetOptimizer();
  }

  resetOptimizer(): void {
    if (this.training) for (const t of [this.m, this.v, this.grads]) this.gpu.clear(t);
    this.step = 0;
  }

  /** Set the weights from named tensors (an imported adapter); every entry must be present. */
  load(tensors: Map<string, Float32Array>): void {
    const host = new Float32Array(this.totalFloats);
    for (const e of this.entries) {
      const t = tensors.get(e.key);
      if (!t || t.length !== e.count) throw new Error(`lora: ${e.key} missing or of length ${t?.length}, expected ${e.count}`);
      host.set(t, e.offset);
    }
    this.gpu.upload(this.params, host);
  }

  /** The weights by PEFT name (one readback). */
  async tensors(which: Tensor = this.params): Promise<Map<string, Float32Array>> {
    const all = await this.gpu.readF32(which);
    const out = new Map<string, Float32Array>();
    for (const e of this.entries) out.set(e.key, all.slice(e.offset, e.offset + e.count));
    return out;
  }

}
