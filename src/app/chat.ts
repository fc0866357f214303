// Generation over the loaded base, with the current adapter or without it, for the site's chat and
// `webtune generate`. Each turn runs on a KV-cache view (infer/kv-open.ts) of the adapted run (the
// model being trained, or an imported adapter) or of a bare run without LoRA, made lazily. Views are
// kept between turns and sized in steps of 256 positions so a chat does not rebuild them every turn.
import { UsageError } from '../errors.ts';
import { checkGenerateOptions } from '../infer/generate.ts';
import { generationModel, type GenerationModel } from '../infer/kv-open.ts';
import { encodePrompt, generateText, type Prompt, type TextResult } from '../infer/text.ts';
import type { DerivedModel } from '../model/open.ts';
import type { ModelStore } from './model-store.ts';
import { sink } from './events.ts';

export interface GenerateOptions {
  /** Apply the adapter (false = the base model). */
  adapter: boolean;
  chat: boolean;
  maxNewTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  seed: number;
}

const VIEW_STEP = 256;

export class Chat {
  /** The run generation uses when asked for the adapter (set by whoever owns that run). */
  adapter: DerivedModel | undefined;
  private bare: DerivedModel | undefined;
  private view: { gen: GenerationModel; owner: DerivedModel; positions: number } | undefined;
  private stopRequested = false;

  constructor(private readonly store: ModelStore) {}

  /** Completes `prompt`, streaming text pieces to `onText` (the last one delivered before returning). */
  async generate(prompt: Prompt, opts: GenerateOptions, onText?: (piece: string) => unknown): Promise<TextResult> {
    checkGenerateOptions(opts);
    const base = this.store.requireModel();
    const gpu = await this.store.device();
    const promptIds = encodePrompt(base.tokenizer.hf, prompt, opts.chat);
    if (opts.adapter && !this.adapter?.lora) throw new UsageError('There is no fine-tuned adapter yet.', 'Train or import an adapter, or chat with the base model.');
    const maxPositions = base.plan.opts.maxPositions;
    const need = promptIds.length + opts.maxNewTokens;
    if (need > maxPositions) {
      throw new UsageError(`The prompt (${promptIds.length} tokens) plus ${opts.maxNewTokens} new tokens exceed the ${maxPositions} positions the model is loaded for.`,
        'Shorten the prompt or ask for fewer new tokens.', { field: 'maxNewTokens' });
    }
    const positions = Math.min(maxPositions, Math.ceil(need / VIEW_STEP) * VIEW_STEP);
    let owner = this.adapter;
    if (!owner) {
      this.bare ??= await this.store.open({ batch: 1, seqLen: 1, training: false });
      owner = this.bare;
    }
    if (!this.view || this.view.owner !== owner || this.view.positions < positions) {
      this.view?.gen.dispose();
      this.view = undefined;
      this.view = { gen: generationModel(gpu, owner, positions), owner, positions };
    }
    this.stopRequested = false;
    const text = sink(onText);
    const r = await generateText(this.view.gen.model, base.tokenizer.hf, prompt, {
      maxNewTokens: opts.maxNewTokens, temperature: opts.temperature, topK: opts.topK, topP: opts.topP, seed: opts.seed,
      chat: opts.chat, eosIds: base.config.eosTokenIds, noAdapter: !opts.adapter, onText: text.send, shouldStop: () => this.stopRequested,
    });
    await text.flushed();
    return r;
  }

  stop(): void {
    this.stopRequested = true;
  }

  /** Forgets a run its owner is about to close (an adapter deleted or evicted from the library):
   *  the view over it goes, and it stops being the adapter. */
  release(run: DerivedModel): void {
    if (this.view?.owner === run) {
      this.view.gen.dispose();
      this.view = undefined;
    }
    if (this.adapter === run) this.adapter = undefined;
  }

  /** Frees the views and the bare run (before a run that needs the memory, or a new model). With
   *  `lost`, everything died with the device: forget it without freeing. */
  reset(lost = false): void {
    if (!lost) {
      this.view?.gen.dispose();
      this.store.close(this.bare);
    }
    this.view = undefined;
    this.bare = undefined;
    this.adapter = undefined;
  }
}
