// The application's state: one engine worker and the state of each step of the user's path.
// Components get this object and read its fields; only the classes below talk to the engine.
import type { TemplateName } from '../data/templates.ts';
import type { ModelSource } from '../worker/api.ts';
import type { FitSettings } from '../app/fit.ts';
import { toTrainOptions } from './train-form.ts';
import { Adapter } from './adapter.svelte.ts';
import { CapabilityCheck } from './capability.svelte.ts';
import { BASE, CURRENT, Chat, type Pick } from './chat.svelte.ts';
import { Dataset } from './dataset.svelte.ts';
import { Library } from './library.svelte.ts';
import type { Engine } from './engine.ts';
import { Models } from './models.svelte.ts';
import { Training } from './training.svelte.ts';

export class Studio {
  readonly check = new CapabilityCheck();
  readonly models: Models;
  readonly dataset: Dataset;
  readonly training: Training;
  readonly chat: Chat;
  readonly adapter: Adapter;
  readonly library: Library;
  /** Base model loads asked of the engine: switching adapters must not add one. */
  modelLoads = $state(0);
  /** Set once the engine answered; the other panels stay hidden until then. */
  ready = $state(false);

  constructor(private readonly engine: Engine | undefined) {
    // Without WebGPU there is no engine; the panels are built on a stand-in that is never called,
    // because the page shows only the explanation then.
    const e = engine ?? (new Proxy({}, { get: () => () => Promise.reject(new Error('no engine')) }) as Engine);
    this.models = new Models(e);
    this.dataset = new Dataset(e);
    this.training = new Training(e);
    this.chat = new Chat(e);
    this.adapter = new Adapter(e);
    this.library = new Library(e);
    this.training.onSaved = () => void this.library.refresh();
  }

  async init(): Promise<void> {
    await this.check.run(this.engine);
    if (this.check.phase !== 'ready') return;
    this.ready = true;
    await Promise.all([this.models.refresh(), this.training.checkPending()]);
  }

  /** Loads a base model; `checkFit` false skips the fit check (a resumed run brings its own
   *  options, which fitted when it started). A model from its source is loaded (and cached) in the
   *  training form's weight form (storage, double quantization); a cached entry in its own, which
   *  the form then takes. */
  async loadModel(source: ModelSource, name: string, checkFit = true): Promise<void> {
    if (this.training.active) return;
    this.modelLoads++;
    // The model is refused before any download when the run the form describes would not fit.
    // Without a budget (the field cleared) only the GPU's per-buffer limits are checked.
    const f = this.training.form;
    const fit = !checkFit || Object.keys(this.training.formErrors).length ? undefined : { options: toTrainOptions(f, this.dataset.seqLen), budget: this.models.budget ?? Infinity };
    const form = source.kind === 'cached' ? undefined : { storage: f.storage ?? 'f16', doubleQuant: f.doubleQuant ?? false };
    const info = await this.models.load(source, name, fit, form);
    if (info) {
      f.storage = info.form.storage;
      f.doubleQuant = info.form.doubleQuant;
      // Library picks belong to the old base; its library is another list.
      this.chat.primary = CURRENT;
      this.chat.against = BASE;
      await this.library.refresh();
    }
    // A new base model invalidates what was prepared for the old one (tokenizer, adapter shapes).
    if (info && this.dataset.file) await this.dataset.prepare();
  }

  /** "Use these settings": the nearest settings that fit go into the form and the dataset panel's
   *  sequence length (the storage, double quantization, checkpointing, batch, accumulation, rank and
   *  targets fields). */
  async applyFit(s: FitSettings, reread = true): Promise<void> {
    if (this.training.active) return;
    const f = this.training.form;
    Object.assign(f, { storage: s.storage, doubleQuant: s.doubleQuant, checkpointing: s.checkpointing, batch: s.batch, gradAccum: s.gradAccum, rank: s.rank, targets: [...s.targets] });
    // A shorter sequence re-reads the dataset, as changing the field by hand does.
    const again = reread && s.seqLen !== this.dataset.seqLen && this.dataset.file && this.models.phase === 'ready';
    this.dataset.seqLen = s.seqLen;
    if (again) await this.dataset.prepare();
  }

  /** Applies the suggestion of a refused load and loads that model again. */
  async loadWithSuggestion(): Promise<void> {
    const t = this.models.tooLarge;
    if (!t?.suggestion) return;
    await this.applyFit(t.suggestion.settings, false); // the load re-reads the dataset for the new model
    await this.loadModel(t.source, t.name);
  }

  /** The training form asks for another weight form than the loaded model's (storage, double
   *  quantization): the form the model would be loaded in now, else undefined. */
  get formChange(): { storage: 'f16' | 'f32'; doubleQuant: boolean } | undefined {
    const info = this.models.info, f = this.training.form;
    if (!info) return undefined;
    const want = { storage: f.storage ?? 'f16', doubleQuant: info.quant === 'nf4' && (f.doubleQuant ?? false) };
    return want.storage === info.form.storage && want.doubleQuant === info.form.doubleQuant ? undefined : want;
  }

  /** Where the loaded model can be read again in another form: the source it was loaded from, or for
   *  a cached entry its demo or Hub origin (with the token the model panel holds); none for a cached
   *  dropped folder. */
  get reloadSource(): ModelSource | undefined {
    const src = this.models.source, info = this.models.info;
    if (!src || !info) return undefined;
    if (src.kind !== 'cached') return src;
    const o = info.origin, token = this.models.token.trim();
    return o?.kind === 'hub' && token ? { ...o, token } : o;
  }

  /** Loads the current model again in the training form's weight form (a cached entry holds one
   *  form, so from its source; the cache is used where it holds that form). */
  async reloadInForm(): Promise<void> {
    const src = this.reloadSource, info = this.models.info;
    if (!src || !info) return;
    await this.loadModel(src, info.name);
  }

  /** Resume the run a reload left behind: load its model from the cache first if needed. */
  async resumePending(): Promise<void> {
    const p = this.training.pending;
    if (!p) return;
    if (this.models.info?.key !== p.modelKey) {
      const cached = this.models.cached.find((m) => m.key === p.modelKey);
      await this.loadModel({ kind: 'cached', key: p.modelKey }, cached?.name ?? p.modelKey, false);
      if (this.models.phase !== 'ready') return;
    }
    // The run's sequence length and template come back with it: the dataset panel shows what the
    // run was prepared with, and the chat frames prompts as the adapter was trained.
    this.dataset.seqLen = p.options.seqLen;
    if (p.template) this.dataset.template = p.template;
    await this.training.resume();
  }

  /** How "as in training" frames a chat message: the template of the run that made the adapter,
   *  else (an imported adapter, or none yet) the prepared dataset's. */
  get chatTemplate(): TemplateName | undefined {
    return (this.training.running ? this.training.template : undefined) ?? this.dataset.summary?.template;
  }

  /** Work a page unload would lose or cut short: a training run (its checkpoint writes included,
   *  the one at pause too) or a model being downloaded, quantized and written to IndexedDB. */
  get unloadWouldLoseWork(): boolean {
    return this.training.active || this.models.phase === 'loading';
  }

  /** Whether the chat can answer with a fine-tuned adapter (trained here or imported). */
  get hasAdapter(): boolean {
    return this.training.logs.length > 0 || this.training.step > 0 || this.adapter.phase === 'imported';
  }

  /** A chat pick's name: the base, the current adapter, or a library entry's name. */
  pickLabel(p: Pick): string {
    if (p === BASE) return 'Base model';
    if (p === CURRENT) return this.library.current ? `Fine-tuned (${this.library.name(this.library.current) ?? 'current'})` : 'Fine-tuned';
    return this.library.name(p) ?? 'Deleted adapter';
  }

  async deleteAdapter(id: string): Promise<void> {
    if (await this.library.remove(id)) this.chat.forget(id);
  }

  async importAdapter(files: File[]): Promise<void> {
    if (!this.models.info) {
      this.adapter.error = { code: 'usage', message: 'Load a base model before importing an adapter.', hint: 'The adapter is checked against the model it will run on.' };
      this.adapter.phase = 'failed';
      return;
    }
    if (await this.adapter.import(files)) {
      this.chat.primary = CURRENT;
      await this.library.refresh();
    }
  }
}
