// The LLaMA-family decoder (Llama 2/3, SmolLM2, TinyLlama, Mistral, Qwen2, Qwen3, Phi-3, Gemma 1/2/3) with LoRA, as hand-written
// forward and backward passes over the engine's kernels (llm.c style). The backward runs in exact
// reverse order of the forward. Every buffer comes from one memory plan (plan.ts), allocated up front.
//
// Per layer (HF LlamaDecoderLayer, fp32):
//   x1 = rmsnorm(h) ; q,k,v = x1·Wᵀ (+b) (+LoRA) ; [Qwen3: q,k = rmsnorm per head] ; rope(q,k) ; o = attn(q,k,v)
//   h2 = h + o·Woᵀ (+LoRA) ; x2 = rmsnorm(h2) ; g,u = x2·Wᵀ (+LoRA) ; m = silu(g)·u
//   h' = h2 + m·Wdᵀ (+LoRA)
// Gemma changes pieces, each driven by a config field: the embedding rows times sqrt(C) (embedScale),
// GeGLU for SiLU (hiddenAct), the attention scale and score softcap (attnScale, attnSoftcap), the
// final-logit softcap (finalSoftcap), the sliding layers' own RoPE tables (Gemma 3) and, with
// sandwichNorms (Gemma 2/3), the attention and MLP outputs normed before their residual adds:
//   ao = o·Woᵀ ; h2 = h + rmsnorm(ao) ; ... ; mo = m·Wdᵀ ; h' = h2 + rmsnorm(mo)
// Its (1 + w) norm weights are stored with the 1 added at load time (load.ts), the same f32 values.
// Residual adds are free: the output buffer starts as a copy of the residual, written by the RMSNorm
// dispatch that reads it anyway (a buffer copy would end the compute pass), and every matmul
// accumulates into it. Decoding saves nothing for a backward, so there the residual stream is one
// buffer (h.0) that each sublayer adds into in place: one compute pass per token.
import type { Binding, Gpu, Scalars, Tensor, View } from '../gpu/runtime.ts';
import { matmul, type MatmulGpuOptions } from '../kernels/matmul.ts';
import { matmulPackedF16 } from '../kernels/matmul_packed_f16.ts';
import { matmulNf4 } from '../kernels/matmul_nf4.ts';
import { GROUP_STORAGE_BUFFERS, matmulNf4Backward, matmulNf4BackwardGlu, matmulNf4BackwardGroup } from '../kernels/matmul_nf4_backward.ts';
import { rmsnormForward, rmsnormForwardAdd } from '../kernels/rmsnorm_forward.ts';
import { rmsnormBackward } from '../kernels/rmsnorm_backward.ts';
import { ropeAppendKv, ropeForwardQk } from '../kernels/rope_forward.ts';
import { ropeBackwardQk } from '../kernels/rope_backward.ts';
import { attentionForward } from '../kernels/attention_forward.ts';
import { attentionBackward } from '../kernels/attention_backward.ts';
import { attentionCached } from '../kernels/attention_cached.ts';
import { swigluForward, type GluAct } from '../kernels/swiglu_forward.ts';
import { swigluBackward } from '../kernels/swiglu_backward.ts';
import { embedding, type EmbeddingTable } from '../kernels/embedding.ts';
import { crossEntropy } from '../kernels/cross_entropy.ts';
import { logitSoftcap } from '../kernels/logit_softcap.ts';
import { loraDownQkv, loraForward, loraForwardQkv, loraUpQkv, type LoraDownSlot, type LoraQkvSlot, type LoraUpSlot } from '../kernels/lora_forward.ts';
import { matvecNf4Qkv, matvecNf4Swiglu, QKV_STORAGE_BUFFERS } from '../kernels/matvec_nf4_fused.ts';
import { matmulNf4GateUp, matmulNf4Qkv, QKV_TILED_STORAGE_BUFFERS } from '../kernels/matmul_nf4_fused.ts';
import { MATVEC_NF4_MAX_M } from '../kernels/matvec_nf4.ts';
import { loraBackward, type LoraBackwardPart } from '../kernels/lora_backward.ts';
import { packF16Gpu, unpackF16Gpu } from '../kernels/pack_f16.ts';
import { PROJS, type LoraEntry, type LoraModule, type LoraState, type Proj } from './lora.ts';
import { FUSED_PARTS, moduleOf } from '../io/hf-names.ts';
import { PER_LAYER_F32, type ModelDims, type Plan } from './plan.ts';

/** A frozen base projection: NF4 (packed codes + f32 absmax, or its double quantization) or full
 *  precision, with an optional bias. */
export type BaseLinear =
  | { kind: 'nf4'; packed: Tensor; absmax: Tensor; doubleQuant?: boolean; bias?: Tensor; N: number; K: number }
  | { kind: 'f32'; w: Tensor; bias?: Tensor; N: number; K: number };

export interface LayerWeights {
  inputNorm: Tensor;
  postNorm: Tensor;
  /** Qwen3's per-head RMSNorm weights (head_dim) of q and k; absent for the other families. */
  qNorm?: Tensor;
  kNorm?: Tensor;
  /** Gemma 2/3: the norms of the attention output (HF post_attention_layernorm) and of the MLP
   *  output (post_feedforward_layernorm); postNorm is then pre_feedforward_layernorm. */
  attnOutNorm?: Tensor;
  mlpOutNorm?: Tensor;
  proj: Record<Proj, BaseLinear>;
}

export interface ModelWeights {
  embed: EmbeddingTable;
  /** (V, C) f32, or f16 pairs when headF16, bound whole for the logits matmul; the embedding's own
   *  tensor when tied. */
  head: Tensor;
  headF16?: boolean;
  norm: Tensor;
  layers: LayerWeights[];
  /** RoPE cos/sin tables (maxPositions, D/2). */
  ropeCos: Tensor;
  ropeSin: Tensor;
  /** Gemma 3: the sliding layers' tables (rope_local_base_freq). */
  ropeLocalCos?: Tensor;
  ropeLocalSin?: Tensor;
  /** LongRoPE generation that may pass the original context: the long-factor tables, used by cache
   *  steps whose positions reach `from` or beyond (ropeCos/ropeSin then hold the short ones). */
  ropeLong?: { cos: Tensor; sin: Tensor; from: number };
}

/** What one forward/backward call works on: a micro-batch of B sequences of T tokens. */
export interface Batch {
  B: number;
  T: number;
  /** Token ids (B*T) u32, positions (B*T) u32 (restart per packed example), next-token targets (B*T) i32, -100 = ignored. */
  ids: Uint32Array;
  positions: Uint32Array;
  targets: Int32Array;
}

export interface RunOptions {
  /** 1 / (unmasked targets in the whole optimizer step): losses and gradients add up to the step's mean. */
  gradScale: number;
  /** Dropout seed for this micro-batch (the backward regenerates the same masks). */
  seed: number;
  training: boolean;
  /** Run the base model alone, bypassing the LoRA adapter (the site compares base and fine-tuned
   *  replies with one loaded model). Forward only: a backward pass always includes the adapter. */
  noAdapter?: boolean;
}

/** A forward step against the KV cache (plan option kvCache, batch 1): the step's T tokens sit at
 *  positions pos0 .. pos0+T-1 and the cache already holds positions 0 .. pos0-1. */
export interface CacheStep {
  pos0: number;
  /** LongRoPE: rope this step with the long factors (weights.ropeLong). */
  long?: boolean;
}

function view(t: Tensor, offsetFloats: number, countFloats: number): View {
  return { tensor: t, offset: offsetFloats * 4, size: countFloats * 4 };
}

/** Mixes (seed, layer, projection) into a per-module dropout seed. */
function moduleSeed(seed: number, layer: number, p: number): number {
  let h = (seed ^ Math.imul(layer + 1, 0x9e3779b1) ^ Math.imul(p + 1, 0x85ebca77)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d) >>> 0;
  return (h ^ (h >>> 15)) >>> 0;
}

export class LlamaModel {
  /** The dropout seed of every (layer, projection), rewritten once per training micro-batch: the
   *  LoRA kernels read theirs from it, so their uniforms and bind groups never change. */
  private seedTable: Scalars | undefined;

  constructor(
    readonly gpu: Gpu,
    readonly dims: ModelDims,
    readonly weights: ModelWeights,
    readonly plan: Plan,
    readonly lora: LoraState | undefined,
  ) {}

  /** The dropout seed of LoRA module m: a fused module (Phi-3) uses its first part's, so the
   *  slices of one module draw the same mask over their shared input. */
  private seeds(l: number, m: LoraModule): { table: Scalars; index: number } {
    this.seedTable ??= this.gpu.scalars('llama.lora_seeds', new Uint32Array(this.dims.numLayers * PROJS.length));
    const p = m === 'qkv_proj' || m === 'gate_up_proj' ? FUSED_PARTS[m][0] : m;
    return { table: this.seedTable, index: l * PROJS.length + PROJS.indexOf(p) };
  }

  /** Projection p's LoRA: its module's A and entry of B, and the binding of p's rows of a B-shaped
   *  buffer. On Phi-3, q, k and v are row slices of qkv_proj's B (gate and up of gate_up_proj's)
   *  sharing one A, so the three products sum to PEFT's fused LoRA and their dA to its gradient. */
  private loraOf(l: number, p: Proj): { module: LoraModule; A: LoraEntry; B: LoraEntry; rows: (t: Tensor) => View } | undefined {
    const lo = this.lora;
    const { module, row } = moduleOf(this.dims, p);
    const A = lo?.entry(l, module, 'A');
    if (!lo || !A) return undefined;
    const B = lo.entry(l, module, 'B')!, R = lo.spec.rank, n = this.weights.layers[l].proj[p].N;
    return { module, A, B, rows: (t) => view(t, B.offset + row * R, n * R) };
  }

  /** Layer l's sliding attention window (Mistral, Qwen2/3 sliding layers), 0 = full causal. */
  private window(l: number): number {
    return this.dims.layerWindows?.[l] ?? 0;
  }

  /** Layer l's RoPE tables: Gemma 3's sliding layers have their own base. */
  private ropeTables(l: number): [Tensor, Tensor] {
    const w = this.weights;
    return w.ropeLocalCos && w.ropeLocalSin && this.window(l) > 0 ? [w.ropeLocalCos, w.ropeLocalSin] : [w.ropeCos, w.ropeSin];
  }

  /** The gated MLP's activation (GeGLU for Gemma). */
  private get gluAct(): GluAct {
    return this.dims.hiddenAct ?? 'silu';
  }

  /** Attention's score scale and softcap (Gemma's query_pre_attn_scalar, attn_logit_softcapping). */
  private get attnScale(): number {
    return this.dims.attnScale ?? 1 / Math.sqrt(this.dims.headDim);
  }

  /** x = the embedding rows of the step's ids, times Gemma's normalizer. */
  private embed(N: number): void {
    embedding(this.gpu, this.t('h.0'), this.t('ids'), this.weights.embed, N, this.dims.embedScale ?? 1);
  }

  /** Gemma 2's final-logit softcap on n rows of logits (inference; the loss applies its own). */
  private capLogits(logits: Tensor, n: number): void {
    if (this.dims.finalSoftcap) logitSoftcap(this.gpu, view(logits, 0, n * this.dims.vocabSize), n * this.dims.vocabSize, this.dims.finalSoftcap);
  }

  private t(name: string): Tensor {
    return this.plan.tensor(name);
  }

  /** The saved-activation set of layer l: one per layer when training without checkpointing, else
   *  one shared set (inference needs nothing saved; checkpointing recomputes each layer). With f16
   *  storage the layers share one f32 working set and each keeps an f16 image of it (plan.savedF16). */
  private act(name: string, l: number): Tensor | View {
    const p = this.plan;
    if (p.cheapRecompute && name === 'x1') name = 'x2';
    if (p.cheapRecompute && name === 'm') return p.tensor('grad.dg');
    if (p.savedF16) {
      const f = p.savedFields.get(name);
      if (f) return view(p.tensor(f.group), f.offset, f.count);
      return p.tensor(PER_LAYER_F32.includes(name) ? `act.${l}.${name}` : `act.${name}`);
    }
    const u = p.loraUFields.get(name);
    if (u) return view(p.tensor(p.perLayerActivations ? `act.${l}.U` : 'act.U'), u.offset, u.count);
    return p.tensor(p.perLayerActivations ? `act.${l}.${name}` : `act.${name}`);
  }

  /** f16 storage: keep layer l's saved activations as f16 once its forward is recorded. */
  private saveLayer(l: number): void {
    const img = this.t(`act.${l}.f16`);
    for (const s of this.plan.savedGroups) packF16Gpu(this.gpu, { tensor: img, offset: s.image * 2, size: s.floats * 2 }, this.t(s.name), s.floats);
  }

  /** f16 storage: bring layer l's saved activations back into the working set (widened to f32) and
   *  recompute what was not saved: x2 (and rstd2) and the SwiGLU product; x1 follows in the
   *  backward, in x2's buffer (plan.cheapRecompute). */
  private restoreLayer(l: number, b: Batch): void {
    const g = this.gpu, d = this.dims, w = this.weights.layers[l];
    const N = b.B * b.T, C = d.hiddenSize;
    const img = this.t(`act.${l}.f16`);
    for (const s of this.plan.savedGroups) unpackF16Gpu(g, this.t(s.name), { tensor: img, offset: s.image * 2, size: s.floats * 2 }, s.floats);
    rmsnormForward(g, this.act('x2', l), this.act('rstd2', l), this.act('h2', l), w.postNorm, N, C, d.rmsNormEps);
    swigluForward(g, this.act('m', l), this.act('g', l), this.act('u', l), N, d.intermediateSize, this.gluAct);
  }

  /** c (M, N) = a · head (ᵀ with transB), through the kernel that reads the head's storage. */
  private headMatmul(c: Binding, a: Binding, M: number, N: number, K: number, opts: MatmulGpuOptions = {}): void {
    if (this.weights.headF16) matmulPackedF16(this.gpu, c, a, this.weights.head, M, N, K, opts);
    else matmul(this.gpu, c, a, this.weights.head, M, N, K, opts);
  }

  linearForward(y: Binding, x: Binding, lin: BaseLinear, M: number, accumulate: boolean): void {
    const g = this.gpu;
    if (lin.kind === 'nf4') {
      matmulNf4(g, y, x, lin.packed, lin.absmax, lin.bias, M, lin.N, lin.K, { accumulate, doubleQuant: lin.doubleQuant });
      return;
    }
    matmul(g, y, x, lin.w, M, lin.N, lin.K, { transB: true, accumulate });
    // Bias as a rank-1 update, ones(M,1)·bias(1,N): no separate add kernel.
    if (lin.bias) matmul(g, y, view(this.t('ones'), 0, M), lin.bias, M, lin.N, 1, { accumulate: true });
  }

  linearBackward(dx: Binding, dy: Binding, lin: BaseLinear, M: number, accumulate: boolean): void {
    if (lin.kind === 'nf4') matmulNf4Backward(this.gpu, dx, dy, lin.packed, lin.absmax, M, lin.N, lin.K, { accumulate, doubleQuant: lin.doubleQuant });
    else matmul(this.gpu, dx, dy, lin.w, M, lin.K, lin.N, { accumulate });
  }

  /** y (=|+=) x·Wᵀ (+b) + LoRA(x), saving the LoRA's U. */
  proj(l: number, p: Proj, y: Binding, x: Binding, M: number, accumulate: boolean, o: RunOptions): void {
    const lin = this.weights.layers[l].proj[p];
    this.linearForward(y, x, lin, M, accumulate);
    this.adapterForward(l, p, y, x, M, o);
  }

  /** y += LoRA(x) of projection p, saving its U; nothing without an adapter there. */
  private adapterForward(l: number, p: Proj, y: Binding, x: Binding, M: number, o: RunOptions): void {
    const lin = this.weights.layers[l].proj[p];
    const lo = this.lora, a = this.loraOf(l, p);
    if (!lo || !a || o.noAdapter) return;
    loraForward(this.gpu, y, this.act(`U.${a.module}`, l), x, lo.view(lo.params, a.A), a.rows(lo.params),
      { M, N: lin.N, K: lin.K, R: lo.spec.rank },
      { scale: this.plan.loraScale, dropout: o.training ? lo.spec.dropout : 0, seeds: this.seeds(l, a.module), noU: !o.training });
  }

  /** dx (=|+=) dy·W + LoRA's dX, and LoRA's dA, dB added into the gradient buffer. */
  private projBackward(l: number, p: Proj, dx: Binding, dy: Binding, x: Binding, M: number, accumulate: boolean): void {
    this.linearBackward(dx, dy, this.weights.layers[l].proj[p], M, accumulate);
    this.adapterBackward(l, p, dx, dy, x, M);
  }

  /** dx += the dX of projection p's LoRA, and its dA, dB added into the gradient buffer; nothing
   *  without an adapter there. */
  private adapterBackward(l: number, p: Proj, dx: Binding, dy: Binding, x: Binding, M: number): void {
    this.adaptersBackward(l, [p], dx, [dy], x, M);
  }

  /** adapterBackward for the adapters among ps (projections sharing x, dys[j] reaching ps[j]), each
   *  stage one dispatch for all of them. ps of a fused module (Phi-3) must go one at a time: their
   *  slices share one A. */
  private adaptersBackward(l: number, ps: Proj[], dx: Binding, dys: Binding[], x: Binding, M: number): void {
    const lo = this.lora;
    if (!lo) return;
    const parts: LoraBackwardPart[] = [];
    let seeds: { table: Scalars; index: number } | undefined;
    ps.forEach((p, j) => {
      const a = this.loraOf(l, p);
      if (!a) return;
      seeds = this.seeds(l, a.module);
      parts.push({ dY: dys[j], U: this.act(`U.${a.module}`, l), N: this.weights.layers[l].proj[p].N, a: a.A.offset,
        b: (a.rows(lo.grads) as View).offset / 4, seedIndex: seeds.index });
    });
    if (!seeds) return;
    loraBackward(this.gpu, dx, lo.grads, this.t('grad.dU'), x, lo.params, parts, { M, K: this.weights.layers[l].proj[ps[0]].K, R: lo.spec.rank },
      { scale: this.plan.loraScale, dropout: lo.spec.dropout, seeds, accumulate: true });
  }

  /** The backward of linears sharing the input x (q/k/v; up/gate), dys[j] reaching ps[j]:
   *  dx = Σ dys[j]·W_j, in one NF4 dispatch when the weights and the device allow (the first linear
   *  writes dx, the others add), then the adapters' backward, each stage one dispatch for all of
   *  them; the slices of a fused module (Phi-3) share one A and go one at a time. */
  private groupBackward(l: number, ps: Proj[], dx: Binding, dys: Binding[], x: Binding, M: number): void {
    const lins = this.nf4Group(l, ps);
    if (lins && this.gpu.limits.maxStorageBuffersPerShaderStage >= GROUP_STORAGE_BUFFERS) {
      matmulNf4BackwardGroup(this.gpu, dx, lins.map((lin, j) => ({ dY: dys[j], Wq: lin.packed, absmax: lin.absmax, N: lin.N })), M, lins[0].K,
        { doubleQuant: lins[0].doubleQuant });
    } else {
      ps.forEach((p, j) => this.linearBackward(dx, dys[j], this.weights.layers[l].proj[p], M, j > 0));
    }
    if (ps.some((p) => this.loraOf(l, p) && this.loraOf(l, p)!.module !== p)) ps.forEach((p, j) => this.adapterBackward(l, p, dx, dys[j], x, M));
    else this.adaptersBackward(l, ps, dx, dys, x, M);
  }

  /** The gated MLP's backward from dm to dx (the post-attention norm's output): without adapters on
   *  gate and up, SwiGLU's (GeGLU's) backward and both NF4 products in one dispatch, dg and du never
   *  stored; otherwise swiglu_backward into grad.dg, grad.du (the adapters need them) and the two
   *  products grouped. */
  private mlpBackward(l: number, dx: Binding, dm: Binding, x2: Binding, M: number): void {
    const g = this.act('g', l), u = this.act('u', l), F = this.dims.intermediateSize;
    const lins = this.nf4Group(l, ['up_proj', 'gate_proj']);
    if (lins && this.gpu.limits.maxStorageBuffersPerShaderStage >= GROUP_STORAGE_BUFFERS && !this.loraOf(l, 'up_proj') && !this.loraOf(l, 'gate_proj')) {
      const [up, gate] = lins;
      matmulNf4BackwardGlu(this.gpu, dx, dm, g, u, { Wq: up.packed, absmax: up.absmax }, { Wq: gate.packed, absmax: gate.absmax }, M, F, up.K,
        { doubleQuant: up.doubleQuant, act: this.gluAct });
      return;
    }
    const dg = this.t('grad.dg'), du = this.t('grad.du');
    swigluBackward(this.gpu, dg, du, dm, g, u, M, F, this.gluAct);
    this.groupBackward(l, ['up_proj', 'gate_proj'], dx, [du, dg], x2, M);
  }

  /** The NF4 linears of layer l that a fused decode kernel can take together: all NF4, no bias, one
   *  absmax format; undefined otherwise. */
  private nf4Group(l: number, ps: Proj[]): Extract<BaseLinear, { kind: 'nf4' }>[] | undefined {
    // An adapter on a fused module (Phi-3's qkv_proj, gate_up_proj) is not in the per-projection
    // entries these kernels read: such layers take the unfused path.
    if (ps.some((p) => this.loraOf(l, p) && this.loraOf(l, p)!.module !== p)) return undefined;
    const lins = ps.map((p) => this.weights.layers[l].proj[p]);
    const nf4 = lins.filter((x): x is Extract<BaseLinear, { kind: 'nf4' }> => x.kind === 'nf4' && !x.bias);
    return nf4.length === lins.length && nf4.every((x) => Boolean(x.doubleQuant) === Boolean(nf4[0].doubleQuant)) ? nf4 : undefined;
  }

  /** q, k, v = x1·Wᵀ (+ LoRA): one dispatch for the three base projections when the weights and the
   *  device allow (then the adapters' branches, grouped), else three proj() calls. Bit-identical
   *  either way. */
  private projQkv(l: number, outs: [Binding, Binding, Binding], x1: Binding, M: number, o: RunOptions): void {
    const qkv: Proj[] = ['q_proj', 'k_proj', 'v_proj'];
    const lins = this.nf4Group(l, qkv);
    const buffers = M <= MATVEC_NF4_MAX_M ? QKV_STORAGE_BUFFERS : QKV_TILED_STORAGE_BUFFERS;
    if (!lins || this.gpu.limits.maxStorageBuffersPerShaderStage < buffers) {
      qkv.forEach((p, j) => this.proj(l, p, outs[j], x1, M, false, o));
      return;
    }
    const parts = lins.map((lin, j) => ({ Y: outs[j], Wq: lin.packed, absmax: lin.absmax, N: lin.N })) as Parameters<typeof matmulNf4Qkv>[2];
    const opts = { doubleQuant: lins[0].doubleQuant };
    if (M <= MATVEC_NF4_MAX_M) matvecNf4Qkv(this.gpu, x1, parts, M, lins[0].K, opts);
    else matmulNf4Qkv(this.gpu, x1, parts, M, lins[0].K, opts);
    // The adapters: their first stages (U saved) in one dispatch, then their second stages in one;
    // where loraForward takes its one-dispatch decoding form, that per adapter.
    const lo = o.noAdapter ? undefined : this.lora;
    const A = qkv.map((p) => lo?.entry(l, p, 'A'));
    if (!lo || !A.some(Boolean) || (!o.training && M <= 4 && lo.spec.rank <= 64)) {
      qkv.forEach((p, j) => this.adapterForward(l, p, outs[j], x1, M, o));
      return;
    }
    const R = lo.spec.rank, scale = this.plan.loraScale;
    const U = qkv.map((p, j) => (A[j] ? this.act(`U.${p}`, l) as View : undefined));
    const down = qkv.map((p, j): LoraDownSlot | undefined => (A[j] ? { A: lo.view(lo.params, A[j]!), U: U[j]!, seedIndex: this.seeds(l, p).index } : undefined));
    loraDownQkv(this.gpu, x1, down as [LoraDownSlot | undefined, LoraDownSlot | undefined, LoraDownSlot | undefined], { M, K: lins[0].K, R },
      { dropout: o.training ? lo.spec.dropout : 0, seeds: this.seeds(l, 'q_proj') });
    const slots = qkv.map((p, j): LoraUpSlot | undefined => (A[j] ? { U: U[j]!, B: lo.view(lo.params, lo.entry(l, p, 'B')!), N: lins[j].N } : undefined));
    loraUpQkv(this.gpu, outs, slots as [LoraUpSlot | undefined, LoraUpSlot | undefined, LoraUpSlot | undefined], { M, R }, { scale });
  }

  /** g, u = x2·Wᵀ and m = silu(g)·u in one dispatch (M > 4, SiLU gate, no adapter on gate or up: the SwiGLU
   *  must see the adapters' terms); false when that does not apply. */
  private projGateUp(l: number, gate: Binding, up: Binding, m: Binding, x2: Binding, M: number, o: RunOptions): boolean {
    const lins = this.nf4Group(l, ['gate_proj', 'up_proj']);
    const lo = o.noAdapter ? undefined : this.lora;
    // The fused epilogue is SwiGLU only: Gemma's GeGLU takes the unfused path.
    if (!lins || this.gluAct !== 'silu' || M <= MATVEC_NF4_MAX_M || lo?.entry(l, 'gate_proj', 'A') || lo?.entry(l, 'up_proj', 'A')) return false;
    const [g, u] = lins;
    matmulNf4GateUp(this.gpu, gate, up, m, x2, { Wq: g.packed, absmax: g.absmax }, { Wq: u.packed, absmax: u.absmax }, M, g.N, g.K, { doubleQuant: g.doubleQuant });
    return true;
  }

  /** Decoding (at most 4 rows): the input norm and q, k, v with their adapters in two dispatches (the
   *  norm and the adapters, then the three base projections adding in) or, without adapters there,
   *  the norm and one. Bit-identical to the unfused path. False when the weights or the device do not
   *  allow it (the caller then runs the unfused path). */
  private decodeQkv(l: number, M: number, outs: [Binding, Binding, Binding], x1: Binding, h: Binding, o: RunOptions): boolean {
    const qkv: Proj[] = ['q_proj', 'k_proj', 'v_proj'];
    const lins = this.nf4Group(l, qkv);
    if (!lins || M > MATVEC_NF4_MAX_M || this.gpu.limits.maxStorageBuffersPerShaderStage < QKV_STORAGE_BUFFERS) return false;
    const d = this.dims, lo = o.noAdapter ? undefined : this.lora;
    const slots = qkv.map((p, j): LoraQkvSlot | undefined => {
      const A = lo?.entry(l, p, 'A');
      return lo && A ? { Y: outs[j], A: lo.view(lo.params, A), B: lo.view(lo.params, lo.entry(l, p, 'B')!), N: lins[j].N } : undefined;
    }) as [LoraQkvSlot | undefined, LoraQkvSlot | undefined, LoraQkvSlot | undefined];
    const C = d.hiddenSize, w = this.weights.layers[l].inputNorm;
    if (lo && slots.some(Boolean) && lo.spec.rank <= 64) {
      loraForwardQkv(this.gpu, outs, slots, x1, h, w, { M, K: C, R: lo.spec.rank }, { scale: this.plan.loraScale, eps: d.rmsNormEps });
    } else if (slots.some(Boolean)) {
      return false;
    } else {
      rmsnormForward(this.gpu, x1, this.act('rstd1', l), h, w, M, C, d.rmsNormEps);
    }
    const parts = lins.map((lin, j) => ({ Y: outs[j], Wq: lin.packed, absmax: lin.absmax, N: lin.N, accumulate: slots[j] !== undefined }));
    matvecNf4Qkv(this.gpu, x1, parts as Parameters<typeof matvecNf4Qkv>[2], M, C, { doubleQuant: lins[0].doubleQuant });
    return true;
  }

  /** Decoding (at most 4 rows), gate and up without adapters, SiLU gate: m = SwiGLU of the post-attention norm's
   *  gate and up projections in one dispatch (bit-identical to the unfused path); false otherwise. */
  private decodeMlp(l: number, M: number, m: Binding, h2: Binding, o: RunOptions): boolean {
    const lins = this.nf4Group(l, ['gate_proj', 'up_proj']);
    const lo = o.noAdapter ? undefined : this.lora;
    if (!lins || this.gluAct !== 'silu' || M > MATVEC_NF4_MAX_M || lo?.entry(l, 'gate_proj', 'A') || lo?.entry(l, 'up_proj', 'A')) return false;
    const [gate, up] = lins, d = this.dims;
    matvecNf4Swiglu(this.gpu, m, h2, { Wq: gate.packed, absmax: gate.absmax }, { Wq: up.packed, absmax: up.absmax }, M, gate.N, gate.K,
      { w: this.weights.layers[l].postNorm, eps: d.rmsNormEps }, { doubleQuant: gate.doubleQuant });
    return true;
  }

  /** One decoder layer over the batch; with `cache`, attention also sees the cached past and this
   *  step's K and V rows are appended to the cache. */
  layerForward(l: number, b: Batch, o: RunOptions, cache?: CacheStep): void {
    const g = this.gpu, d = this.dims, w = this.weights.layers[l];
    const N = b.B * b.T, C = d.hiddenSize, H = d.numHeads, Hkv = d.numKvHeads, D = d.headDim, F = d.intermediateSize;
    // With the cache, h, h2 and h' are one buffer (see the header).
    const h = this.t(cache ? 'h.0' : `h.${l}`), hOut = cache ? h : this.t(`h.${l + 1}`);
    const x1 = this.act('x1', l), x2 = this.act('x2', l), h2 = cache ? h : this.act('h2', l);
    const q = this.act('q', l), k = this.act('k', l), v = this.act('v', l), att = this.act('o', l);
    const pos = this.t('positions');
    const [cos, sin] = this.ropeTables(l);
    // Qwen3: q and k are projected into qr, kr and normed per head (rows of D) into q, k.
    const qkNorm = w.qNorm && w.kNorm;
    const qOut = qkNorm ? this.act('qr', l) : q, kOut = qkNorm ? this.act('kr', l) : k;
    if (!cache || !this.decodeQkv(l, N, [qOut, kOut, v], x1, h, o)) {
      // The norms also start the residual sums (h2 = h, then h' = h2) as copies of their input.
      rmsnormForward(g, x1, this.act('rstd1', l), h, w.inputNorm, N, C, d.rmsNormEps, h2 !== h ? h2 : undefined);
      this.projQkv(l, [qOut, kOut, v], x1, N, o);
    }
    if (qkNorm) {
      rmsnormForward(g, q, this.act('rstdq', l), this.act('qr', l), w.qNorm!, N * H, D, d.rmsNormEps);
      rmsnormForward(g, k, this.act('rstdk', l), this.act('kr', l), w.kNorm!, N * Hkv, D, d.rmsNormEps);
    }
    if (cache) {
      // One dispatch ropes q and k; the new K and V rows (after RoPE, as HF caches them) go in at
      // their positions, pos0 on, written by it too (a copy would end the compute pass); attention
      // then reads the cache.
      const kc = this.t(`kv.${l}.k`), vc = this.t(`kv.${l}.v`);
      // LongRoPE past the original context takes the long-factor tables (no Gemma 3 local tables then).
      const rl = cache.long ? this.weights.ropeLong : undefined;
      ropeAppendKv(g, q, k, v, pos, rl?.cos ?? cos, rl?.sin ?? sin, kc, vc, N, H, Hkv, D);
      attentionCached(g, att, q, kc, vc, N, cache.pos0, H, Hkv, D, this.attnScale, undefined, this.window(l), d.attnSoftcap ?? 0);
    } else {
      ropeForwardQk(g, q, k, pos, cos, sin, b.B, b.T, H, Hkv, D);
      // Positions restart at each packed example, and the kernel masks by them: an example never
      // attends to another in its row (for an unpacked row they are 0 .. T-1: plain causal).
      attentionForward(g, att, this.act('lse', l), q, k, v, b.B, b.T, H, Hkv, D, this.attnScale, undefined, this.window(l), pos, d.attnSoftcap ?? 0);
    }
    this.sublayerOut(l, 'o_proj', h2, att, w.attnOutNorm, 'ao', 'rstd3', N, o);
    const m = this.act('m', l);
    if (!cache || !this.decodeMlp(l, N, m, h2, o)) {
      rmsnormForward(g, x2, this.act('rstd2', l), h2, w.postNorm, N, C, d.rmsNormEps, hOut !== h2 ? hOut : undefined);
      const gate = this.act('g', l), up = this.act('u', l);
      if (!this.projGateUp(l, gate, up, m, x2, N, o)) {
        this.proj(l, 'gate_proj', gate, x2, N, false, o);
        this.proj(l, 'up_proj', up, x2, N, false, o);
        swigluForward(g, m, gate, up, N, F, this.gluAct);
      }
    }
    this.sublayerOut(l, 'down_proj', hOut, m, w.mlpOutNorm, 'mo', 'rstd4', N, o);
  }

  /** res += x·Wᵀ (+LoRA); with Gemma 2/3's output norm, the projection goes to `saved` first and
   *  res += rmsnorm(saved) (its rstd saved too, for the backward). */
  private sublayerOut(l: number, p: Proj, res: Binding, x: Binding, norm: Tensor | undefined, saved: string, rstd: string, N: number, o: RunOptions): void {
    if (!norm) {
      this.proj(l, p, res, x, N, true, o);
      return;
    }
    const y = this.act(saved, l);
    this.proj(l, p, y, x, N, false, o);
    rmsnormForwardAdd(this.gpu, res, this.act(rstd, l), y, norm, N, this.dims.hiddenSize, this.dims.rmsNormEps);
  }

  /** Backward of sublayerOut: the gradient reaching the projection's output, dy itself without an
   *  output norm, else through the norm into grad.dx (free at both places it is called). */
  private sublayerOutBackward(l: number, dy: Tensor, norm: Tensor | undefined, saved: string, rstd: string, N: number): Tensor {
    if (!norm) return dy;
    const dx = this.t('grad.dx');
    rmsnormBackward(this.gpu, dx, dy, this.act(saved, l), norm, this.act(rstd, l), N, this.dims.hiddenSize);
    return dx;
  }

  /** On entry grad.dh holds dL/dh'; on exit dL/dh (the layer's input). Mirror of layerForward. */
  private layerBackward(l: number, b: Batch): void {
    const g = this.gpu, d = this.dims, w = this.weights.layers[l];
    const N = b.B * b.T, C = d.hiddenSize, H = d.numHeads, Hkv = d.numKvHeads, D = d.headDim;
    const dh = this.t('grad.dh'), dx = this.t('grad.dx');
    const h = this.t(`h.${l}`), h2 = this.act('h2', l), x1 = this.act('x1', l), x2 = this.act('x2', l);
    const pos = this.t('positions');
    const [cos, sin] = this.ropeTables(l);
    // MLP
    const dm = this.t('grad.dm');
    this.projBackward(l, 'down_proj', dm, this.sublayerOutBackward(l, dh, w.mlpOutNorm, 'mo', 'rstd4', N), this.act('m', l), N, false);
    this.mlpBackward(l, dx, dm, x2, N);
    rmsnormBackward(g, dh, dx, h2, w.postNorm, this.act('rstd2', l), N, C, true);
    // x1 shares x2's buffer when it is cheaper to recompute than to keep (plan.cheapRecompute).
    if (this.plan.cheapRecompute) rmsnormForward(g, x1, this.act('rstd1', l), h, w.inputNorm, N, C, d.rmsNormEps);
    // Attention
    const dO = this.t('grad.do'), dq = this.t('grad.dq'), dk = this.t('grad.dk'), dv = this.t('grad.dv');
    this.projBackward(l, 'o_proj', dO, this.sublayerOutBackward(l, dh, w.attnOutNorm, 'ao', 'rstd3', N), this.act('o', l), N, false);
    attentionBackward(g, dq, dk, dv, dO, this.act('q', l), this.act('k', l), this.act('v', l), this.act('o', l),
      this.act('lse', l), b.B, b.T, H, Hkv, D, this.attnScale, undefined, this.window(l), pos, undefined, d.attnSoftcap ?? 0);
    ropeBackwardQk(g, dq, dk, pos, cos, sin, b.B, b.T, H, Hkv, D);
    let dqr = dq, dkr = dk;
    if (w.qNorm && w.kNorm) {
      // Through the frozen per-head norms: dO is free again and takes dq's result.
      dqr = dO;
      dkr = this.t('grad.dkr');
      rmsnormBackward(g, dqr, dq, this.act('qr', l), w.qNorm, this.act('rstdq', l), N * H, D);
      rmsnormBackward(g, dkr, dk, this.act('kr', l), w.kNorm, this.act('rstdk', l), N * Hkv, D);
    }
    this.groupBackward(l, ['v_proj', 'k_proj', 'q_proj'], dx, [dv, dkr, dqr], x1, N);
    rmsnormBackward(g, dh, dx, h, w.inputNorm, this.act('rstd1', l), N, C, true);
  }

  /**
   * One micro-batch: forward, fused cross-entropy (per-token losses into `loss`), and when training
   * the backward, adding LoRA gradients into lora.grads. Records GPU work only: no readback.
   */
  step(b: Batch, o: RunOptions): void {
    const g = this.gpu, d = this.dims, L = d.numLayers, C = d.hiddenSize, V = d.vocabSize;
    const N = b.B * b.T;
    if (N > this.plan.maxTokens) throw new RangeError(`model: ${N} tokens exceed the plan's ${this.plan.maxTokens}`);
    g.upload(this.t('ids'), b.ids);
    g.upload(this.t('positions'), b.positions);
    g.upload(this.t('targets'), b.targets);
    if (o.training && this.lora) {
      const seeds = new Uint32Array(L * PROJS.length);
      for (let l = 0; l < L; l++) for (let p = 0; p < PROJS.length; p++) seeds[l * PROJS.length + p] = moduleSeed(o.seed, l, p);
      this.seedTable = g.scalars('llama.lora_seeds', seeds);
    }
    this.embed(N);
    for (let l = 0; l < L; l++) {
      this.layerForward(l, b, o);
      if (o.training && this.plan.savedF16) this.saveLayer(l);
    }
    const xf = this.t('final.x'), rstdF = this.t('final.rstd');
    rmsnormForward(g, xf, rstdF, this.t(`h.${L}`), this.weights.norm, N, C, d.rmsNormEps);
    // Logits and their gradient chunk by chunk: never a (N, V) buffer.
    const logits = this.t('logits'), dxf = o.training ? this.t('grad.dx') : undefined;
    const Tc = this.plan.lossChunk;
    for (let t0 = 0; t0 < N; t0 += Tc) {
      const n = Math.min(Tc, N - t0);
      const lg = view(logits, 0, n * V);
      this.headMatmul(lg, view(xf, t0 * C, n * C), n, V, C, { transB: true });
      crossEntropy(g, view(this.t('loss'), t0, n), lg, view(this.t('targets'), t0, n), n, V, o.gradScale, d.finalSoftcap ?? 0);
      // dX = dlogits · head has few output tiles (n × C) and a vocabulary-long reduction: split-K,
      // its slices in grad.dm, which the layers' backward only uses after this loop.
      if (dxf) this.headMatmul(view(dxf, t0 * C, n * C), lg, n, C, V, { splitK: this.t('grad.dm') });
    }
    if (!dxf) return;
    rmsnormBackward(g, this.t('grad.dh'), dxf, this.t(`h.${L}`), this.weights.norm, rstdF, N, C, false);
    for (let l = L - 1; l >= 0; l--) {
      if (this.plan.checkpointing) this.layerForward(l, b, o); // recompute this layer's activations
      else if (this.plan.savedF16) this.restoreLayer(l, b);
      this.layerBackward(l, b);
    }
  }

  /** Forward only, logits of every position into the 'logits' buffer (N, V); N must fit one loss chunk. */
  forwardLogits(b: Batch): Tensor {
    const g = this.gpu, d = this.dims, C = d.hiddenSize, V = d.vocabSize, N = b.B * b.T;
    if (N > this.plan.lossChunk) throw new RangeError(`model: ${N} positions of logits exceed one chunk of ${this.plan.lossChunk}`);
    const o: RunOptions = { gradScale: 0, seed: 0, training: false };
    g.upload(this.t('ids'), b.ids);
    g.upload(this.t('positions'), b.positions);
    this.embed(N);
    for (let l = 0; l < d.numLayers; l++) this.layerForward(l, b, o);
    const xf = this.t('final.x');
    rmsnormForward(g, xf, this.t('final.rstd'), this.t(`h.${d.numLayers}`), this.weights.norm, N, C, d.rmsNormEps);
    const logits = this.t('logits');
    this.headMatmul(view(logits, 0, N * V), xf, N, V, C, { transB: true });
    this.capLogits(logits, N);
    return logits;
  }

  /**
   * Generation step with the KV cache (plan option kvCache): `ids` at positions pos0 .. pos0+n-1
   * (a whole prompt in one pass, or one token), cache rows 0 .. pos0-1 already filled by earlier
   * steps. Records GPU work only; the logits of the last position are the first V floats of the
   * returned 'logits' buffer, the one row sampling needs to read back.
   */
  forwardNext(ids: Uint32Array, pos0: number, opts: { noAdapter?: boolean; longRope?: boolean } = {}): Tensor {
    const g = this.gpu, d = this.dims, C = d.hiddenSize, V = d.vocabSize, L = d.numLayers, n = ids.length;
    if (!this.plan.opts.kvCache) throw new Error('model: forwardNext needs a plan with kvCache');
    if (n < 1 || n > this.plan.maxTokens) throw new RangeError(`model: ${n} tokens in one step; the plan holds 1 to ${this.plan.maxTokens}`);
    if (pos0 + n > this.plan.opts.maxPositions) {
      throw new RangeError(`model: positions up to ${pos0 + n} exceed the KV cache's ${this.plan.opts.maxPositions}`);
    }
    const o: RunOptions = { gradScale: 0, seed: 0, training: false, noAdapter: opts.noAdapter };
    const positions = new Uint32Array(n);
    for (let i = 0; i < n; i++) positions[i] = pos0 + i;
    const b: Batch = { B: 1, T: n, ids, positions, targets: new Int32Array(0) };
    g.upload(this.t('ids'), ids);
    g.upload(this.t('positions'), positions);
    this.embed(n);
    // LongRoPE: long factors once the sequence passes the original context (or when re-filling the
    // cache after crossing it, generate.ts); otherwise the short ones.
    const rl = this.weights.ropeLong;
    const long = rl !== undefined && (opts.longRope ?? pos0 + n > rl.from);
    for (let l = 0; l < L; l++) this.layerForward(l, b, o, { pos0, long });
    // Only the last position reaches the final norm and the (V, C) head. Its row of the residual
    // stream (h.0 when decoding) is bound in place when its offset is aligned, as a decoded token's
    // row 0 is; otherwise it is copied out first.
    const xl = this.t('last.x'), stream = this.t('h.0'), at = (n - 1) * C * 4;
    let hl: Binding = { tensor: stream, offset: at, size: C * 4 };
    if (at % this.gpu.limits.minStorageBufferOffsetAlignment !== 0) {
      const row = this.t('last.h');
      g.copy(stream, at, row, 0, C * 4);
      hl = row;
    }
    rmsnormForward(g, xl, this.t('last.rstd'), hl, this.weights.norm, 1, C, d.rmsNormEps);
    const logits = this.t('logits');
    this.headMatmul(view(logits, 0, V), xl, 1, V, C, { transB: true });
    this.capLogits(logits, 1);
    return logits;
  }
}
