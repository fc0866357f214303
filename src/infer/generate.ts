// Autoregressive generation over the KV cache: the prompt is prefilled in one pass, then one token per
// step. Each step reads back one thing: the best logits of the last position as (value, id) pairs,
// selected on the GPU (shaders/topk_select.wgsl), from which the CPU sampler draws exactly as it
// would from the whole row: one pair for greedy, the next power of two above k for top-k (at most
// 2 KiB). Temperature alone, top-p without top-k, top-k of 256 or more, and the rare top-k whose ties
// with the k-th run past the pairs read back the whole row of V logits instead. Greedy or seeded
// temperature / top-k / top-p sampling, stopping at an EOS id or the token limit, with tokens handed
// to onToken as they come.
import { UsageError } from '../errors.ts';
import type { Tensor } from '../gpu/runtime.ts';
import type { LlamaModel } from '../model/llama.ts';
import { splitPairs, topkSelect } from '../kernels/topk_select.ts';
import { candidateCount, Rng, sampleCandidates, sampleToken, type SamplingOptions } from './sample.ts';

export interface GenerateOptions {
  maxNewTokens: number;
  /** 0 = greedy (the default). */
  temperature?: number;
  /** 0 or undefined = off. */
  topK?: number;
  /** 1 or undefined = off. */
  topP?: number;
  /** Seed of the sampling draws: same seed, same tokens. */
  seed?: number;
  /** Generation stops after emitting any of these (the EOS token is part of the result, as in HF). */
  eosIds?: number[];
  /** Called with each new token as soon as it is chosen. */
  onToken?: (id: number) => void;
  /** Generate from the base model alone, with the LoRA adapter bypassed. */
  noAdapter?: boolean;
  /** Checked between steps: returning true stops generation (a UI's stop button). */
  shouldStop?: () => boolean;
}

/** Throws a UsageError naming the bad option; shared with the CLI and the worker. */
export function checkGenerateOptions(o: GenerateOptions): void {
  const bad = (field: string, value: unknown, want: string) =>
    new UsageError(`Invalid ${field}: ${String(value)}.`, `${field} must be ${want}.`, { field, value });
  if (!Number.isInteger(o.maxNewTokens) || o.maxNewTokens < 1) throw bad('maxNewTokens', o.maxNewTokens, 'an integer of at least 1');
  if (o.temperature !== undefined && !(Number.isFinite(o.temperature) && o.temperature >= 0)) throw bad('temperature', o.temperature, 'a number >= 0 (0 = greedy)');
  if (o.topK !== undefined && !(Number.isInteger(o.topK) && o.topK >= 0)) throw bad('topK', o.topK, 'an integer >= 0 (0 = off)');
  if (o.topP !== undefined && !(o.topP > 0 && o.topP <= 1)) throw bad('topP', o.topP, 'in (0, 1] (1 = off)');
  if (o.seed !== undefined && !Number.isInteger(o.seed)) throw bad('seed', o.seed, 'an integer');
}

/**
 * Continues `promptIds` with up to maxNewTokens tokens and returns the new ids. The model must be
 * planned with kvCache, batch 1, and room for prompt + maxNewTokens - 1 positions (the last token
 * chosen is never fed back). LoRA is applied when the model has an adapter, unless noAdapter.
 */
export async function generate(model: LlamaModel, promptIds: ArrayLike<number>, opts: GenerateOptions): Promise<number[]> {
  checkGenerateOptions(opts);
  const plan = model.plan, V = model.dims.vocabSize, P = promptIds.length;
  if (!plan.opts.kvCache) {
    throw new UsageError('This model was opened without a KV cache.', 'Open it for generation: training false, batch 1, kvCache true.', { field: 'kvCache' });
  }
  if (P < 1) throw new UsageError('The prompt is empty.', 'Give at least one token (most tokenizers add BOS).', { field: 'prompt' });
  for (let i = 0; i < P; i++) {
    const id = promptIds[i];
    if (!Number.isInteger(id) || id < 0 || id >= V) {
      throw new UsageError(`Prompt token ${i} is ${id}, outside the vocabulary of ${V}.`, 'Use the tokenizer that ships with the model.', { field: 'prompt', index: i, id });
    }
  }
  const positions = plan.opts.maxPositions;
  if (P > plan.maxTokens || P + opts.maxNewTokens - 1 > positions) {
    throw new UsageError(
      `A prompt of ${P} tokens plus ${opts.maxNewTokens} new tokens does not fit the ${Math.min(positions, plan.maxTokens)} positions the model was opened for.`,
      'Open the model with seqLen >= prompt tokens + max new tokens, or shorten the prompt.',
      { field: 'maxNewTokens', promptTokens: P, maxNewTokens: opts.maxNewTokens, positions, prefill: plan.maxTokens },
    );
  }
  const sampling: SamplingOptions = { temperature: opts.temperature ?? 0, topK: opts.topK, topP: opts.topP };
  const rng = new Rng(opts.seed ?? 0);
  const eos = new Set(opts.eosIds ?? []);
  const out: number[] = [];
  let logits = model.forwardNext(Uint32Array.from(promptIds), 0, { noAdapter: opts.noAdapter });
  for (;;) {
    const id = await nextToken(model, logits, sampling, rng);
    out.push(id);
    opts.onToken?.(id);
    if (eos.has(id) || out.length >= opts.maxNewTokens || opts.shouldStop?.()) return out;
    const pos = P + out.length - 1, rl = model.weights.ropeLong;
    if (rl && pos === rl.from && P <= rl.from) {
      // LongRoPE crossing its original context: the cached keys were roped with the short factors,
      // so the whole sequence is run again with the long ones, as Phi3ForCausalLM's
      // prepare_inputs_for_generation drops its cache at this point to recompute it. In steps of
      // the plan's tokens per pass: a view made for fewer positions than the cache holds
      // (kv-open.ts) takes fewer tokens per pass.
      const all = Uint32Array.from([...Array.from(promptIds), ...out]);
      for (let at = 0; at < all.length; at += plan.maxTokens) {
        logits = model.forwardNext(all.subarray(at, at + plan.maxTokens), at, { noAdapter: opts.noAdapter, longRope: true });
      }
    } else {
      logits = model.forwardNext(Uint32Array.of(id), pos, { noAdapter: opts.noAdapter });
    }
  }
}

/** The token drawn from the first V floats of `logits`, reading back only the candidates it needs. */
async function nextToken(model: LlamaModel, logits: Tensor, o: SamplingOptions, rng: Rng): Promise<number> {
  const g = model.gpu, V = model.dims.vocabSize, c = candidateCount(o, V);
  if (c > 0) {
    const scratch: [Tensor, Tensor] = [model.plan.tensor('sample.a'), model.plan.tensor('sample.b')];
    const best = topkSelect(g, scratch, { tensor: logits, offset: 0, size: V * 4 }, V, c);
    const { ids, values } = splitPairs(await g.readU32(best, 0, 2 * c), c);
    const id = sampleCandidates(ids, values, V, o, rng);
    if (id !== undefined) return id;
  }
  return sampleToken(await g.readF32(logits, 0, V), o, rng);
}
