// The memory plan: one table of every GPU buffer a model run needs (name → category → bytes),
// computed from the config and the run's shape before anything is allocated. The loader and the
// model allocate from this table and nothing else, so the plan's total is what the GPU holds, and
// "will it fit" is answered before the first byte is uploaded.
import type { Category, Gpu, Tensor } from '../gpu/runtime.ts';
import { GpuOutOfMemoryError } from '../errors.ts';
import { dqWords, nf4Words } from '../quant/nf4.ts';
import { loraScaling, loraTable, PROJS, type LoraSpec, type Proj } from './lora.ts';
import { linearShape } from '../io/hf-names.ts';
import { gradNormPartials } from '../kernels/grad_norm.ts';
import { crossEntropyChunkTokens } from '../kernels/cross_entropy.ts';

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
}

export interface PlanOptions {
  /** Sequences per micro-batch and tokens per sequence. */
  batch: number;
  seqLen: number;
  quant: 'nf4' | 'none';
  /** NF4 absmax double-quantized on the GPU (8-bit codes + absmax2 per 256 blocks + offset). */
  doubleQuant?: boolean;
  /** Element storage of the embedding and an untied lm_head: f16 pairs in u32 words, or f32 (default). */
  storage?: 'f16' | 'f32';
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
    const table = o.storage === 'f16' ? Math.ceil((V * C) / 2) * 4 : f32(V * C);
    add('embed', 'weights', table, 'weights');
    if (!d.tieWordEmbeddings) add('head', 'weights', table, 'weights');
    add('norm', 'weights', f32(C), 'weights');
    add('rope.cos', 'weights', f32((o.maxPositions * D) / 2), 'weights');
    add('rope.sin', 'weights', f32((o.maxPositions * D) / 2), 'weights');
    let largest = 0;
    for (let l = 0; l < L; l++) {
      add(`layers.${l}.input_layernorm`, 'weights', f32(C), 'weights');
      add(`layers.${l}.post_attention_layernorm`, 'weights', f32(C), 'weights');
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
    const sets = this.perLayerActivations ? L : 1;
    const R = o.lora?.rank ?? 0;
    for (let s = 0; s < sets; s++) {
      const pre = this.perLayerActivations ? `act.${s}.` : 'act.';
      for (const n of ['x1', 'x2', 'h2']) add(pre + n, 'activations', f32(N * C));
      for (const n of ['rstd1', 'rstd2']) add(pre + n, 'activations', f32(N));
      add(pre + 'q', 'activations', f32(N * H * D));
      add(pre + 'o', 'activations', f32(N * H * D));
      add(pre + 'k', 'activations', f32(N * Hkv * D));
      add(pre + 'v', 'activations', f32(N * Hkv * D));
      add(pre + 'lse', 'activations', f32(o.batch * H * o.seqLen));
      if (d.qkNorm) {
        // q and k as projected (the norms' inputs, for their backward) and the per-head rstd.
        add(pre + 'qr', 'activations', f32(N * H * D));
        add(pre + 'kr', 'activations', f32(N * Hkv * D));
        add(pre + 'rstdq', 'activations', f32(N * H));
        add(pre + 'rstdk', 'activations', f32(N * Hkv));
      }
      for (const n of ['g', 'u', 'm']) add(pre + n, 'activations', f32(N * F));
      for (const p of o.lora?.targets ?? []) add(pre + `U.${p}`, 'activations', f32(N * R));
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
    }
    if (o.training) {
      for (const n of ['grad.dh', 'grad.dx']) add(n, 'scratch', f32(N * C));
      for (const n of ['grad.dm', 'grad.dg', 'grad.du']) add(n, 'scratch', f32(N * F));
      for (const n of ['grad.do', 'grad.dq']) add(n, 'scratch', f32(N * H * D));
      for (const n of ['grad.dk', 'grad.dv']) add(n, 'scratch', f32(N * Hkv * D));
      // dk through k_norm (dq through q_norm reuses grad.do, free once attention's backward is done).
      if (d.qkNorm) add('grad.dkr', 'scratch', f32(N * Hkv * D));
      add('grad.Dsum', 'scratch', f32(o.batch * H * o.seqLen));
      if (o.lora) add('grad.dU', 'scratch', f32(N * R));
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
