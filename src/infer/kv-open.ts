// A generation view of an opened model: a plan with the KV cache (plan option kvCache, batch 1) that
// shares the opened model's weights and LoRA parameters and allocates only what generation needs on
// top. Two uses:
//  - the site chats with the model it is training: the training plan (batch 2, saved activations,
//    optimizer state) stays, and the chat runs on the live adapter with its own small buffers;
//  - the CLI and tests, while openModel does not forward a kvCache option to its Plan
//    (src/model/open.ts): an inference plan of batch 1 is reused whole, so only the cache is added.
import type { Gpu } from '../gpu/runtime.ts';
import { UsageError } from '../errors.ts';
import { LlamaModel } from '../model/llama.ts';
import type { OpenedModel } from '../model/open.ts';
import { Plan } from '../model/plan.ts';
import { needsLongTables } from '../model/rope.ts';
import { uploadRopeTables } from '../model/load-cached.ts';

export interface GenerationModel {
  model: LlamaModel;
  /** Frees the buffers this view allocated (never the shared weights or adapter). */
  dispose(): void;
}

/** `positions`: prompt + new tokens the view must hold; at most the opened model's RoPE table rows. */
export function generationModel(gpu: Gpu, opened: OpenedModel, positions = opened.plan.opts.maxPositions): GenerationModel {
  const old = opened.plan, o = old.opts;
  if (o.kvCache && positions <= o.maxPositions) return { model: opened.model, dispose: () => {} };
  if (positions > o.maxPositions) {
    throw new UsageError(
      `Generation needs ${positions} positions; the model was opened for ${o.maxPositions}.`,
      'Open the model with a longer sequence length (seqLen or maxPositions), or ask for fewer new tokens.',
      { field: 'maxNewTokens', positions, maxPositions: o.maxPositions },
    );
  }
  // An inference plan of batch 1 already has every buffer generation needs but the cache: reuse it.
  const reuse = !o.training && o.batch === 1 && o.seqLen >= positions;
  const plan = new Plan(old.dims, {
    ...o, batch: 1, seqLen: reuse ? o.seqLen : positions, training: false, checkpointing: false, kvCache: true,
  });
  // LongRoPE generation past the original context needs the short and the long tables; a model
  // opened without the cache holds one set, chosen for its own longest position: build both here.
  const ownRope = needsLongTables(opened.config, true, o.maxPositions) && !old.rows.some((r) => r.name === 'rope.cos.long');
  const shared = new Set<string>();
  for (const r of plan.rows) {
    if (r.phase === 'load' || (ownRope && r.name.startsWith('rope.'))) continue;
    if (r.phase === 'weights' || r.name === 'lora.params' || (reuse && !/^(kv|last|sample)\./.test(r.name))) {
      plan.adopt(r.name, old.tensor(r.name));
      shared.add(r.name);
    }
  }
  plan.allocRun(gpu);
  const weights = ownRope ? { ...opened.model.weights, ...uploadRopeTables(gpu, opened.config, plan) } : opened.model.weights;
  const model = new LlamaModel(gpu, old.dims, weights, plan, opened.lora);
  return {
    model,
    dispose: () => {
      for (const r of plan.rows) if ((r.phase === 'run' || (ownRope && r.name.startsWith('rope.'))) && !shared.has(r.name)) plan.free(gpu, r.name);
    },
  };
}
