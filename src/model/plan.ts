// The memory plan: one table of every GPU buffer a model run needs (name → category → bytes),
// computed from the config and the run's shape before anything is allocated. The loader and the
// model allocate from this table and nothing else, so the plan's total is what the GPU holds, and
// "will it fit" is answered before the first byte is uploaded.
import type { Category, Gpu, Tensor } from '../gpu/runtime.ts';
import { GpuOutOfMemoryError } from '../errors.ts';
import { dqWords, nf4Words } from '../quant/nf4.ts';
import { loraScaling, loraTable, PROJS, type LoraSpec, type Proj } from './lora.ts';
import { linearShape, selectModules } from '../io/hf-names.ts';
import { needsLongTables, type RopeConfig } from './rope.ts';
import { gradNormPartials } from '../kernels/grad_norm.ts';
import { crossEntropyChunkTokens } from '../kernels/cross_entropy.ts';
import { topkScratchBytes } from '../kernels/topk_select.ts';
import { loraGroupScratchBytes } from '../kernels/lora_backward.ts';

/** The dimensions the engine needs from a config (ModelConfig provides them). */
export interface ModelDims {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  rmsNormEps: number;
  tieWordEmbeddings: boolean;
  attentionBias: boolean;
  /** o_proj has a bias too (Llama with attention_bias). */
  oProjBias?: boolean;
  /** Per-head RMSNorm of q and k before RoPE (Qwen3's q_norm, k_norm). */
  qkNorm?: boolean;
  /** Per layer: its sliding attention window in tokens, 0 = full causal attention. */
  layerWindows?: readonly number[];
  /** Gemma 2/3's extra norms: the attention output and the MLP output are normed before their
   *  residual adds (their inputs and rstd are saved activations). */
  sandwichNorms?: boolean;
  /** Gemma 3: the sliding layers' own RoPE base (a second pair of tables). */
  ropeLocalTheta?: number | null;
  /** Gemma: GeGLU ('gelu_tanh') for SwiGLU; the embedding normalizer; the attention score scale
   *  (default head_dim^-0.5) and softcap; the final-logit softcap (0 = none). */
  hiddenAct?: 'silu' | 'gelu_tanh';
  embedScale?: number;
  attnScale?: number;
  attnSoftcap?: number;
  finalSoftcap?: number;
  /** Phi-3: LoRA adapts the fused qkv_proj and gate_up_proj (the base is split at load). */
  fusedProjections?: boolean;
  /** RoPE scaling; LongRoPE generation past the original context plans a second table pair. */
  rope?: RopeConfig;
}

export interface PlanOptions {
  /** Sequences per micro-batch and tokens per sequence. */
  batch: number;
  seqLen: number;
  quant: 'nf4' | 'none';
  /** NF4 absmax double-quantized on the GPU (8-bit codes + absmax2 per 256 blocks + offset). */
  doubleQuant?: boolean;
  /** Element storage of the embedding, an untied lm_head and (training without checkpointing) the
   *  saved activations and LoRA intermediates: f16 pairs in u32 words, or f32 (the exact path; the
   *  default here, while the CLI, worker and site default to f16). Arithmetic is f32 either way. */
  storage?: 'f16' | 'f32';
  /** The embedding and head's storage when it is not `storage`: a run over loaded weights keeps the
   *  tables the base was loaded with while its own activations follow the run's storage. */
  tableStorage?: 'f16' | 'f32';
  /** LoRA adapter, or undefined for the bare base model. */
  lora?: LoraSpec;
  /** Backward pass buffers (gradients, optimizer state) are only planned when training. */
  training: boolean;
  checkpointing: boolean;
  /** Rows of the RoPE tables (the longest position used). */
  maxPositions: number;
  /** Micro-batches per optimizer step: their per-token losses are kept for one readback per step. */
  gradAccum?: number;
  /** Inference with a KV cache (generation): per-layer K and V caches of maxPositions rows, and the
   *  small buffers that take the last position alone through the final norm and the logits. */
  kvCache?: boolean;
  /** Device limits that shape chunking. */
  limits: Pick<GPUSupportedLimits, 'maxStorageBufferBindingSize' | 'maxBufferSize'>;
}

export type Phase = 'weights' | 'load' | 'run';

export interface PlanRow {
  name: string;
  category: Category;
  bytes: number;
  phase: Phase;
}

const LOGITS_BUDGET = 64 * 2 ** 20;

const f32 = (n: number) => Math.max(4, Math.ceil(n) * 4);

export function linearBytes(quant: 'nf4' | 'none', N: number, K: number, doubleQuant = false): { w: number; absmax: number } {
  const blocks = Math.ceil((N * K) / 64);
  return quant === 'nf4' ? { w: nf4Words(N * K) * 4, absmax: doubleQuant ? dqWords(blocks) * 4 : f32(blocks) } : { w: f32(N * K), absmax: 0 };
}

/** With f16 storage, the saved fields that stay f32, one per layer: small, and precision-sensitive. */
export const PER_LAYER_F32 = ['lse', 'rstdq', 'rstdk', 'rstd3', 'rstd4'];

export class Plan {
  readonly rows: PlanRow[] = [];
  private byName = new Map<string, PlanRow>();
  private tensors = new Map<string, Tensor>();
  readonly maxTokens: number;
  readonly lossChunk: number;
  readonly loraScale: number;
  readonly checkpointing: boolean;
  /** One saved-activation set per layer (training without checkpointing: the backward reads them
   *  all), else one set 'act.*' that every layer overwrites (inference, or recomputed per layer). */
  readonly perLayerActivations: boolean;
  /** f16 storage of the saved activations (training, no checkpointing, storage f16): each layer
   *  computes in one f32 working set and keeps an f16 image of the part the backward needs,
   *  'act.L.f16' (one pack per working buffer); the norm outputs and the SwiGLU product are
   *  recomputed from it, which is cheaper than saving them. */
  readonly savedF16: boolean;
  /** The f32 working buffers of the saved fields and where each sits in the layer's f16 image
   *  (`image`: its first float, a multiple of 128 so the view starts on a 256-byte boundary). */
  readonly savedGroups: { name: string; floats: number; image: number }[] = [];
  /** Where each saved field sits in its working buffer (f32 offset and count; offsets are multiples
   *  of 64 floats, so every field is a 256-byte aligned binding view). */
  readonly savedFields = new Map<string, { group: string; offset: number; count: number }>();
  /** Without f16 storage: where each LoRA module's U sits in its layer's U buffer ('act.U' or
   *  'act.L.U'; f32 offset and count, offsets multiples of 64 floats). */
  readonly loraUFields = new Map<string, { offset: number; count: number }>();
  /** Training with one shared working set (checkpointing, or f16 saved activations): the norm
   *  outputs and the SwiGLU product are recomputed where the backward needs them, so x1 shares
   *  x2's buffer (recomputed before the attention backward) and m lives in 'grad.dg' (free until
   *  the SwiGLU backward, which m no longer feeds). */
  readonly cheapRecompute: boolean;
  /** Floats in one layer's f16 image. */
  readonly savedFloats: number = 0;
  /** The embedding and an untied head are f16 pairs (storage or tableStorage 'f16'). */
  readonly tablesF16: boolean;

  constructor(
    readonly dims: ModelDims,
    readonly opts: PlanOptions,
  ) {
    const d = dims, o = opts;
    const N = o.batch * o.seqLen, C = d.hiddenSize, F = d.intermediateSize, V = d.vocabSize;
    const H = d.numHeads, Hkv = d.numKvHeads, D = d.headDim, L = d.numLayers;
    this.maxTokens = N;
    this.checkpointing = o.training && o.checkpointing;
    this.perLayerActivations = o.training && !o.checkpointing;
    this.loraScale = o.lora ? loraScaling(o.lora) : 0;
    // Loss chunks: as many tokens as fit one binding and a 64 MiB logits budget (at a 128k vocab a
    // whole 512-token batch of logits would be 250 MiB of scratch for no speed gain), starting at
    // multiples of 64 tokens so their views meet the 256-byte binding alignment.
    const fit = Math.min(crossEntropyChunkTokens(V, o.limits, N), Math.floor(LOGITS_BUDGET / (4 * V)));
    this.lossChunk = fit >= N ? N : Math.max(64, fit - (fit % 64));
    if (this.lossChunk * V * 4 > o.limits.maxStorageBufferBindingSize && this.lossChunk > fit) {
      throw new GpuOutOfMemoryError('logits', 64 * V * 4, {}, o.limits.maxStorageBufferBindingSize);
    }
    const add = (name: string, category: Category, bytes: number, phase: Phase = 'run') => {
      const r = { name, category, bytes: Math.ceil(bytes / 4) * 4, phase };
      this.rows.push(r);
      this.byName.set(name, r);
    };
    // Weights (allocated by the loader under these names).
    this.tablesF16 = (o.tableStorage ?? o.storage) === 'f16';
    const table = this.tablesF16 ? Math.ceil((V * C) / 2) * 4 : f32(V * C);
    add('embed', 'weights', table, 'weights');
    if (!d.tieWordEmbeddings) add('head', 'weights', table, 'weights');
    add('norm', 'weights', f32(C), 'weights');
    add('rope.cos', 'weights', f32((o.maxPositions * D) / 2), 'weights');
    add('rope.sin', 'weights', f32((o.maxPositions * D) / 2), 'weights');
    if (d.ropeLocalTheta) {
      add('rope.local.cos', 'weights', f32((o.maxPositions * D) / 2), 'weights');
      add('rope.local.sin', 'weights', f32((o.maxPositions * D) / 2), 'weights');
    }
    if (needsLongTables(d, o.kvCache ?? false, o.maxPositions)) {
      add('rope.cos.long', 'weights', f32((o.maxPositions * D) / 2), 'weights');
      add('rope.sin.long', 'weights', f32((o.maxPositions * D) / 2), 'weights');
    }
    let largest = 0;
    for (let l = 0; l < L; l++) {
      add(`layers.${l}.input_layernorm`, 'weights', f32(C), 'weights');
      add(`layers.${l}.post_attention_layernorm`, 'weights', f32(C), 'weights');
      if (d.sandwichNorms) for (const n of ['pre_feedforward_layernorm', 'post_feedforward_layernorm']) add(`layers.${l}.${n}`, 'weights', f32(C), 'weights');
      if (d.qkNorm) for (const n of ['q_norm', 'k_norm']) add(`layers.${l}.${n}`, 'weights', f32(D), 'weights');
      for (const p of PROJS) {
        const [n, k] = linearShape(d, p);
        const b = linearBytes(o.quant, n, k, o.doubleQuant);
        add(`layers.${l}.${p}.weight`, 'weights', b.w, 'weights');
        if (b.absmax) add(`layers.${l}.${p}.absmax`, 'weights', b.absmax, 'weights');
        const biased = p === 'o_proj' ? d.oProjBias : d.attentionBias && (p === 'q_proj' || p === 'k_proj' || p === 'v_proj');
        if (biased) add(`layers.${l}.${p}.bias`, 'weights', f32(n), 'weights');
        largest = Math.max(largest, n * k);
      }
    }
    // The f32 staging buffer a linear weight passes through on its way to NF4; freed after loading.
    if (o.quant === 'nf4') add('load.staging', 'scratch', f32(largest), 'load');
    // Double quantization starts from the f32 absmax the quantize kernel writes (read back, coded on the CPU).
    if (o.quant === 'nf4' && o.doubleQuant) add('load.absmax', 'scratch', f32(Math.ceil(largest / 64)), 'load');
    // LoRA and optimizer.
    if (o.lora) {
      const { totalFloats } = loraTable(d, o.lora);
      add('lora.params', 'lora', f32(totalFloats));
      if (o.training) {
        for (const n of ['lora.grads', 'lora.adam_m', 'lora.adam_v']) add(n, 'optimizer', f32(totalFloats));
        add('optim.partials', 'optimizer', f32(gradNormPartials(totalFloats)));
        // Per-token losses of every micro-batch of the step, then [sumsq, norm]: one readback per step.
        add('optim.report', 'scratch', f32((o.gradAccum ?? 1) * N + 2));
        add('optim.norm', 'optimizer', f32(2));
      }
    }
    // Activations. The residual stream at every layer boundary is always kept (checkpoints).
    for (const n of ['ids', 'positions', 'targets', 'loss', 'ones']) add(n, 'activations', f32(N));
    for (let l = 0; l <= L; l++) add(`h.${l}`, 'activations', f32(N * C));
    const R = o.lora?.rank ?? 0;
    // One saved LoRA intermediate U (N, R) per adapted module; a fused module's parts share it.
    const loraModules = o.lora ? selectModules(d, o.lora.targets) : [];
    // One layer's activations, in floats.
    const fields: [string, number][] = [
      ['x1', N * C], ['x2', N * C], ['h2', N * C], ['rstd1', N], ['rstd2', N], ['q', N * H * D], ['o', N * H * D],
      ['k', N * Hkv * D], ['v', N * Hkv * D], ['lse', o.batch * H * o.seqLen], ['g', N * F], ['u', N * F], ['m', N * F],
      ...loraModules.map((p): [string, number] => [`U.${p}`, N * R]),
      // Qwen3: q and k as projected (the per-head norms' inputs, for their backward) and their rstd.
      ...(d.qkNorm ? [['qr', N * H * D], ['kr', N * Hkv * D], ['rstdq', N * H], ['rstdk', N * Hkv]] as [string, number][] : []),
      // Gemma 2/3: the attention and MLP outputs before their norms (ao, mo), and those norms' rstd.
      ...(d.sandwichNorms ? [['ao', N * C], ['mo', N * C], ['rstd3', N], ['rstd4', N]] as [string, number][] : []),
    ];
    this.savedF16 = this.perLayerActivations && o.storage === 'f16';
    this.cheapRecompute = this.checkpointing || this.savedF16;
    const aliased = (n: string) => this.cheapRecompute && (n === 'x1' || n === 'm');
    if (this.savedF16) {
      // What the backward reads and cannot cheaply recompute goes through f16; x1 = rmsnorm(h.l),
      // x2 = rmsnorm(h2) and m = silu(g)·u are recomputed, and the small per-row rstd are recomputed
      // with them. lse stays f32 per layer (a few KiB, and exp(s - lse) is sensitive to it).
      // The saved fields share a few working buffers, grouped so that no kernel binds one buffer
      // writable and again in the same dispatch (WebGPU forbids it even for disjoint views):
      // attention writes o while reading q, k, v; o_proj writes h2 while reading o; the LoRA kernels
      // write y and U together; Qwen3's per-head norms write q, k while reading qr, kr. The per-row
      // rstd of those norms stay f32 per layer, like lse (written by the dispatch that reads qr).
      // Gemma's sublayer outputs ao, mo get a group of their own: the norm that reads ao adds into h2.
      const groups = [['h2', 'q', 'k', 'v', 'g', 'u'], ['o'], loraModules.map((p) => `U.${p}`), d.qkNorm ? ['qr', 'kr'] : [],
        d.sandwichNorms ? ['ao', 'mo'] : []];
      const size = new Map(fields);
      for (const [n, count] of fields) {
        if ((n === 'x1' || n === 'x2' || n === 'm' || n === 'rstd1' || n === 'rstd2') && !aliased(n)) add(`act.${n}`, 'activations', f32(count));
      }
      let image = 0;
      groups.forEach((names, i) => {
        if (!names.length) return;
        const group = `act.work.${i}`;
        let off = 0;
        for (const n of names) {
          const count = size.get(n)!;
          this.savedFields.set(n, { group, offset: off, count });
          off += Math.ceil(count / 64) * 64;
        }
        add(group, 'activations', f32(off));
        this.savedGroups.push({ name: group, floats: off, image });
        image += Math.ceil(off / 128) * 128;
      });
      this.savedFloats = image;
      for (let l = 0; l < L; l++) {
        add(`act.${l}.f16`, 'activations', image * 2);
        for (const n of PER_LAYER_F32) if (size.has(n)) add(`act.${l}.${n}`, 'activations', f32(size.get(n)!));
      }
    } else {
      // A layer's LoRA U's share one buffer ('act.U', per layer 'act.L.U'), at 64-float aligned
      // offsets: the q/k/v adapters' first stages write theirs in one dispatch (lora_forward.wgsl
      // `down_qkv`), which binds a single U buffer.
      let uFloats = 0;
      for (const [n, count] of fields) {
        if (!n.startsWith('U.')) continue;
        this.loraUFields.set(n, { offset: uFloats, count });
        uFloats += Math.ceil(count / 64) * 64;
      }
      const sets = this.perLayerActivations ? L : 1;
      for (let s = 0; s < sets; s++) {
        const pre = this.perLayerActivations ? `act.${s}.` : 'act.';
        for (const [n, count] of fields) if (!aliased(n) && !n.startsWith('U.')) add(pre + n, 'activations', f32(count));
        if (uFloats) add(`${pre}U`, 'activations', f32(uFloats));
      }
    }
    add('final.x', 'activations', f32(N * C));
    add('final.rstd', 'activations', f32(N));
    add('logits', 'scratch', f32(this.lossChunk * V));
    if (o.kvCache) {
      // Batch 1: one sequence, its K and V after RoPE for every position up to maxPositions.
      for (let l = 0; l < L; l++) {
        add(`kv.${l}.k`, 'kv-cache', f32(o.maxPositions * Hkv * D));
        add(`kv.${l}.v`, 'kv-cache', f32(o.maxPositions * Hkv * D));
      }
      // Sampling needs the logits of the last position only: its residual row is copied here (views
      // of h.L could not start at an arbitrary row: bindings need 256-byte offsets) and normed alone.
      add('last.h', 'activations', f32(C));
      add('last.x', 'activations', f32(C));
      add('last.rstd', 'activations', f32(1));
      // Sampling selects the best logits on the GPU and reads back only those (src/infer/generate.ts).
      add('sample.a', 'scratch', topkScratchBytes(V));
      add('sample.b', 'scratch', topkScratchBytes(V));
    }
    if (o.training) {
      for (const n of ['grad.dh', 'grad.dx']) add(n, 'scratch', f32(N * C));
      for (const n of ['grad.dm', 'grad.dg', 'grad.du']) add(n, 'scratch', f32(N * F));
      for (const n of ['grad.do', 'grad.dq']) add(n, 'scratch', f32(N * H * D));
      for (const n of ['grad.dk', 'grad.dv']) add(n, 'scratch', f32(N * Hkv * D));
      // dk through k_norm (dq through q_norm reuses grad.do, free once attention's backward is done).
      if (d.qkNorm) add('grad.dkr', 'scratch', f32(N * Hkv * D));
      // LoRA backward's scratch: dU (N, R) and the split-K partial sums of its rank-R products, one
      // region per adapter of a call: q/k/v's adapters go together, gate/up's too (llama.ts
      // adaptersBackward), the others alone; sized for the largest call (lora_backward.ts).
      if (o.lora) {
        const targets = o.lora.targets;
        const calls = [['q_proj', 'k_proj', 'v_proj'], ['gate_proj', 'up_proj']].map((g) => targets.filter((p) => g.includes(p)));
        for (const p of targets) if (!calls.some((c) => c.includes(p))) calls.push([p]);
        const sizes = calls.filter((c) => c.length > 0).map((c) => loraGroupScratchBytes(N, linearShape(d, c[0])[1], R, c.map((p) => linearShape(d, p)[0])));
        add('grad.dU', 'scratch', Math.max(f32(N * R), ...sizes));
      }
    }
  }

  bytes(filter: (r: PlanRow) => boolean = () => true): number {
    return this.rows.filter(filter).reduce((s, r) => s + r.bytes, 0);
  }

  /** Bytes by category once running (weights + run buffers). */
  byCategory(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const r of this.rows) if (r.phase !== 'load') out[r.category] = (out[r.category] ?? 0) + r.bytes;
    return out;
  }

  /** Peak: loading holds weights + staging; running holds weights + everything else. */
  peakBytes(): number {
    const weights = this.bytes((r) => r.phase === 'weights');
    return Math.max(weights + this.bytes((r) => r.phase === 'load'), weights + this.bytes((r) => r.phase === 'run'));
  }

  row(name: string): PlanRow {
    const r = this.byName.get(name);
    if (!r) throw new Error(`plan: no buffer named ${name}`);
    return r;
  }

  /** Allocate one planned buffer (the loader uses this for weights, the model for the rest). */
  alloc(gpu: Gpu, name: string): Tensor {
    const r = this.row(name);
    const t = gpu.tensor(name, r.category, r.bytes);
    this.tensors.set(name, t);
    return t;
  }

  /** Allocate every run-phase buffer not yet allocated. */
  allocRun(gpu: Gpu, skip: (name: string) => boolean = () => false): void {
    for (const r of this.rows) if (r.phase === 'run' && !this.tensors.has(r.name) && !skip(r.name)) this.alloc(gpu, r.name);
    const ones = this.tensors.get('ones');
    if (ones) gpu.upload(ones, new Float32Array(this.maxTokens).fill(1));
  }

  tensor(name: string): Tensor {
    const t = this.tensors.get(name);
    if (!t) throw new Error(`plan: buffer ${name} is not allocated`);
    return t;
  }

  adopt(name: string, t: Tensor): void {
    this.tensors.set(name, t);
  }

  free(gpu: Gpu, name: string): void {
    const t = this.tensors.get(name);
    if (t) gpu.free(t);
    this.tensors.delete(name);
  }
}

export type { Proj };
