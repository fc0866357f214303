// The loaded base model and the GPU device it lives on, for the site's worker and the CLI alike.
// Three sources (the shipped demo folder, a Hugging Face repo, a local folder: dropped Files in the
// browser, a directory in Node) are read and checked without the GPU (ModelStore.read), then loaded
// (NF4-quantized on the GPU) under a weights-only plan, and, where the host gives a key-value store,
// kept in the IndexedDB cache of per-layer shards so the next visit loads with no network. Runs
// (training, chat, an imported adapter) are opened over these weights with `open`, so the site can
// switch between them without reloading the base.
//
// A lost device is detected without waiting (isDeviceLoss) and `recover` brings the base back on a
// new device, from the cache when it is there (from its source otherwise).
import { Gpu } from '../gpu/runtime.ts';
import { DeviceLostError, GpuOutOfMemoryError, ModelFileError, UsageError, WebtuneError } from '../errors.ts';
import { blobSource, type ByteSource } from '../io/byte-source.ts';
import { F32_FORM, ModelCache, formLabel, manifestForm, type KeyValueStore, type Locks, type ModelManifest, type WeightForm } from '../io/cache.ts';
import { hubBaseUrl, remoteModel, type DownloadProgress, type RetryNotice } from '../io/hub.ts';
import { openModelFolder, type FileList, type ModelFolder } from '../io/model-folder.ts';
import { parseModelConfig, type ModelConfig } from '../model/config.ts';
import { loadWeights } from '../model/load.ts';
import { loadCachedWeights, weightShards } from '../model/load-cached.ts';
import { openOverWeights, type DerivedModel, type LoadedBase, type OpenOptions } from '../model/open.ts';
import { Plan } from '../model/plan.ts';
import { expectedWeights } from '../model/weights.ts';
import type { ImportedAdapter } from '../model/adapter.ts';
import { loadTokenizerFromText, type LoadedTokenizer } from '../data/tokenizer.ts';
import { emit } from './events.ts';
import { requireFit, type FitSettings } from './fit.ts';

type Fetch = (input: string, init?: RequestInit) => Promise<Response>;

/** Where a base model comes from. */
export type ModelSource =
  | { kind: 'demo' } // public/models/demo, shipped with the site
  | { kind: 'hub'; id: string; revision?: string; token?: string } // Hugging Face, with an optional access token
  | { kind: 'files'; files: File[] } // a folder the user dropped or picked
  | { kind: 'cached'; key: string }; // a model already quantized into IndexedDB

/** What the app layer loads from: a ModelSource, or a folder of byte sources (the CLI's directory). */
export type StoreSource = ModelSource | { kind: 'folder'; name: string; files: FileList };

export type Quant = 'nf4' | 'none';
export { F32_FORM, formLabel, type WeightForm };

export type LoadEvent =
  | { phase: 'download'; file: string; loaded: number; total: number; bytesPerSecond: number }
  /** A request failed or stalled and is tried again (the page says "stalled, retrying…"). */
  | ({ phase: 'retry' } & RetryNotice)
  | { phase: 'quantize'; tensor: string; done: number; total: number }
  | { phase: 'cache'; done: number; total: number }
  | { phase: 'upload'; done: number; total: number };

export interface ModelInfo {
  /** IndexedDB key of the cached quantized model. */
  key: string;
  name: string;
  arch: string;
  params: number;
  vocabSize: number;
  layers: number;
  hiddenSize: number;
  quant: Quant;
  /** The form the weights are held in on the GPU (and in the cache entry). */
  form: WeightForm;
  hasChatTemplate: boolean;
  /** True when every weight came from IndexedDB (no network, no quantization). */
  fromCache: boolean;
  /** Where a model loaded from the cache can be read again (to load it in another form): the demo
   *  folder or its Hub repo and revision; absent for a dropped folder. */
  origin?: ModelSource;
}

export interface CachedModel {
  key: string;
  name: string;
  revision: string | null;
  quant: Quant;
  /** The form the entry holds (f32 tables, no double quantization for an entry written before the
   *  cache held other forms). */
  form: WeightForm;
  bytes: number;
  savedAt: number;
}

export interface ModelStoreHost {
  /** The IndexedDB stand-in the cache lives in; without one nothing is cached (the CLI). */
  store?: KeyValueStore;
  /** navigator.locks: cache writers hold a lock, and listing the cache first removes entries whose
   *  writer died mid-write (a tab closed while caching), so a partial model is never kept. */
  locks?: Locks;
  fetch?: Fetch;
  /** Absolute URL of the shipped demo model folder, ending in "/". */
  demoUrl?: string;
  createGpu?: () => Promise<Gpu>;
  /** RoPE rows the base is loaded with (the longest sequence any run may use); default
   *  min(max_position_embeddings, 4096). */
  maxPositions?: number;
  /** The Hub's address (a mirror, or the e2e tier's local stand-in); default https://huggingface.co. */
  hubUrl?: string;
  /** A download request that sends no byte for this long is a stall, aborted and resumed; default
   *  hub.ts's 10 s. */
  stallTimeoutMs?: number;
}

/** A model's files, read and checked; nothing on the GPU yet. */
export interface ModelFiles {
  name: string;
  source: StoreSource;
  revision: string | null;
  folder: ModelFolder;
  config: ModelConfig;
  /** config.json, tokenizer.json, tokenizer_config.json (and generation_config.json) as text: what the cache keeps. */
  texts: Record<string, string>;
  tokenizer: LoadedTokenizer;
}

export interface Base extends LoadedBase {
  key: string;
  name: string;
  source: StoreSource;
  quant: Quant;
  tokenizer: LoadedTokenizer;
  info: ModelInfo;
}

export interface LoadOptions {
  /** bitsandbytes double quantization of the NF4 absmax; nf4 only. With `storage`, the weight form
   *  (WeightForm) the model is loaded, cached and looked up in the cache in. Absent: a cached source
   *  keeps the form its entry holds; another source takes the form of `fit`'s run when the load
   *  follows it, else f32 tables without double quantization. */
  doubleQuant?: boolean;
  /** RoPE rows to load for (the CLI: its sequence length); default from the host. */
  maxPositions?: number;
  /** Storage of the embedding and an untied head, and the default of runs over this base (the CLI's
   *  --storage); a training run's saved activations follow its own storage option. */
  storage?: 'f16' | 'f32';
  /** Refuse the model before any weight is downloaded (or read from the cache) when the training
   *  run these settings describe does not fit the device (src/app/fit.ts). */
  fit?: FitRequest;
}

export interface FitRequest {
  settings: FitSettings;
  /** GPU bytes the run may peak at. */
  budget: number;
  /** The RoPE rows are the run's sequence length (the CLI); otherwise the host's (the site). */
  positionsFollowRun?: boolean;
  /** How the host names the suggested settings (the CLI's flags), for the error's hint. */
  flags?: (s: FitSettings, from: FitSettings) => string;
}

/** The key's tail that names a weight form: none for f32 tables without double quantization (so the
 *  entries written before the cache held other forms keep their keys), else "#f16", "#dq" or
 *  "#f16+dq". A Hub id, a revision and a quantization never contain "#". */
export function formSuffix(form: WeightForm): string {
  const parts = [...(form.storage === 'f16' ? ['f16'] : []), ...(form.doubleQuant ? ['dq'] : [])];
  return parts.length ? `#${parts.join('+')}` : '';
}

const FORM_TAIL = /#(f16|dq|f16\+dq)$/;

/** The form a cache key names (formSuffix's inverse). */
export function formOfKey(key: string): WeightForm {
  const tail = FORM_TAIL.exec(key)?.[1] ?? '';
  return { storage: tail.startsWith('f16') ? 'f16' : 'f32', doubleQuant: tail.endsWith('dq') };
}

/** The model a cache key names, whatever its form: adapters trained over one form of a model run
 *  over any other form of it (LoRA weights are f32 either way). */
export function modelOfKey(key: string): string {
  return key.replace(FORM_TAIL, '');
}

export const sameForm = (a: WeightForm, b: WeightForm): boolean => a.storage === b.storage && a.doubleQuant === b.doubleQuant;

/** The cache key of a model source, quantization and weight form. */
export function cacheKey(source: StoreSource, quant: Quant, form: WeightForm = F32_FORM): string {
  return source.kind === 'cached' ? source.key : sourceKey(source, quant) + formSuffix(form);
}

function sourceKey(source: Exclude<StoreSource, { kind: 'cached' }>, quant: Quant): string {
  switch (source.kind) {
    case 'demo':
      return `demo:${quant}`;
    case 'hub':
      return `hub:${source.id.trim()}@${source.revision || 'main'}:${quant}`;
    case 'files': {
      // A dropped folder has no id: its name, and the sizes and dates of its weight files.
      const sig = source.files.filter((f) => f.name.endsWith('.safetensors')).map((f) => `${f.size}.${f.lastModified}`).sort().join(',');
      return `files:${folderName(source.files)}:${sig}:${quant}`;
    }
    case 'folder':
      return `folder:${source.name}:${quant}`;
  }
}

/** What a user calls the model before its files are read. */
function sourceName(s: StoreSource): string {
  return s.kind === 'demo' ? 'Demo model' : s.kind === 'hub' ? s.id.trim() : s.kind === 'files' ? folderName(s.files) : s.kind === 'folder' ? s.name : s.key;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text; // parseModelConfig refuses a non-object with the file's name
  }
}

function folderName(files: File[]): string {
  const rel = (files[0] as File & { webkitRelativePath?: string })?.webkitRelativePath;
  return rel && rel.includes('/') ? rel.split('/')[0] : 'local model';
}

export class ModelStore {
  gpu: Gpu | undefined;
  base: Base | undefined;
  readonly cache: ModelCache | undefined;
  /** Runs opened over the base; freed with it. */
  private readonly runs = new Set<DerivedModel>();
  /** The load in progress: cancel() aborts it. */
  private loading: AbortController | undefined;

  constructor(readonly host: ModelStoreHost = {}) {
    this.cache = host.store ? new ModelCache(host.store, host.locks) : undefined;
  }

  // ------------------------------------------------------------------------------------ device

  async device(): Promise<Gpu> {
    if (!this.gpu || this.gpu.lostError) this.gpu = await (this.host.createGpu ?? (() => Gpu.create()))();
    return this.gpu;
  }

  /**
   * Whether `e` came from a lost device. Free for ordinary failures: WebGPU settles `device.lost`
   * before any other promise of a lost device (gpuweb/gpuweb#5244), so by the time a failed
   * mapAsync reaches us the runtime's flag is set. Only an untyped error (a DOMException from the
   * driver) costs one queue round trip, which on a lost device settles after `lost` too.
   */
  async isDeviceLoss(e: unknown): Promise<boolean> {
    if (e instanceof DeviceLostError) return true;
    const g = this.gpu;
    if (!g) return false;
    if (g.lostError) return true;
    if (e instanceof WebtuneError) return false;
    await g.device.queue.onSubmittedWorkDone().catch(() => {});
    return g.lostError !== undefined;
  }

  get lost(): boolean {
    return this.gpu?.lostError !== undefined;
  }

  requireModel(): Base {
    if (!this.base) throw new UsageError('No model is loaded.', 'Load a model first (the demo model needs no download).');
    return this.base;
  }

  // ------------------------------------------------------------------------------------ cache

  async listCached(): Promise<CachedModel[]> {
    // Safe only where writers hold locks (another tab may be writing an entry right now).
    if (this.cache?.locks) await this.cache.collectGarbage();
    return (await this.cache?.list() ?? []).map((m) => ({
      key: m.key, name: m.name, revision: m.revision, quant: m.quant, form: manifestForm(m), bytes: m.totalBytes, savedAt: m.savedAt,
    }));
  }

  async deleteCached(key: string): Promise<void> {
    await this.cache?.delete(key);
  }

  async isCached(key: string): Promise<boolean> {
    return !!(await this.cache?.get(key));
  }

  // ------------------------------------------------------------------------------------ loading

  /**
   * Cancels the load in progress: every download request in flight is aborted and none is started
   * after, and a cache write stops and removes what it wrote. The load rejects with a
   * ModelFileError whose reason is "cancelled".
   */
  cancel(): void {
    this.loading?.abort();
  }

  private checkCancelled(what: string): void {
    if (this.loading?.signal.aborted) {
      throw new ModelFileError(`${what}: the load was cancelled.`, 'Load the model again when you want it.', { file: what, reason: 'cancelled' });
    }
  }

  /** Reads and checks a model's files (config, tokenizer, the weights' headers) without the GPU. */
  async read(source: StoreSource, quant: Quant = 'nf4', onEvent?: (e: LoadEvent) => void, onConfig?: (cfg: ModelConfig) => Promise<void>): Promise<ModelFiles> {
    let files: FileList, texts: Record<string, string> = {}, name: string, revision: string | null = null;
    const onProgress = (p: DownloadProgress) => void emit(onEvent, { phase: 'download', ...p });
    const onRetry = (r: RetryNotice) => void emit(onEvent, { phase: 'retry', ...r });
    if (source.kind === 'demo' || source.kind === 'hub') {
      if (!this.host.fetch || (source.kind === 'demo' && !this.host.demoUrl)) throw new UsageError('This host cannot download models.', 'Load a local model folder.');
      const headers: Record<string, string> = source.kind === 'hub' && source.token ? { Authorization: `Bearer ${source.token}` } : {};
      if (source.kind === 'hub') revision = source.revision || 'main';
      const url = source.kind === 'demo' ? this.host.demoUrl! : hubBaseUrl(source.id, revision!, this.host.hubUrl);
      ({ files, texts } = await remoteModel(url, {
        fetch: this.host.fetch, headers, onProgress, onRetry, signal: this.loading?.signal, stallTimeoutMs: this.host.stallTimeoutMs,
        onConfig: onConfig && ((text) => onConfig(parseModelConfig(parseJson(text), 'config.json'))),
      }));
      name = source.kind === 'demo' ? 'Demo model (tiny Llama)' : source.id.trim();
    } else if (source.kind === 'files') {
      files = source.files.map((f) => blobSource(f, (f as File & { webkitRelativePath?: string }).webkitRelativePath || f.name));
      name = folderName(source.files);
    } else if (source.kind === 'folder') {
      files = source.files;
      name = source.name;
    } else {
      throw new Error('model-store: cached models are read from the cache');
    }
    const folder = await openModelFolder(files);
    const config = parseModelConfig(folder.config, folder.configFile);
    if (source.kind === 'files' || source.kind === 'folder') await onConfig?.(config);
    texts = { ...texts, ...(await folderTexts(folder, texts)) };
    const tokenizer = loadTokenizerFromText(texts['tokenizer.json'], texts['tokenizer_config.json'], name);
    return { name, source, revision, folder, config, texts, tokenizer };
  }

  /** Loads a base model (from the cache when it is there), replacing the one loaded before. */
  async load(source: StoreSource | ModelFiles, quant: Quant, onEvent?: (e: LoadEvent) => void, opts: LoadOptions = {}): Promise<ModelInfo> {
    if (opts.doubleQuant && quant !== 'nf4') {
      throw new UsageError('Double quantization applies to NF4 weights only.', 'Use --quant nf4 with --double-quant.', { field: 'double-quant' });
    }
    const ctrl = new AbortController();
    this.loading = ctrl;
    try {
      return await this.loadNow(source, quant, onEvent, opts);
    } finally {
      if (this.loading === ctrl) this.loading = undefined;
    }
  }

  private async loadNow(source: StoreSource | ModelFiles, quant: Quant, onEvent: ((e: LoadEvent) => void) | undefined, opts: LoadOptions): Promise<ModelInfo> {
    const read = 'folder' in source && 'texts' in source ? source : undefined;
    const src = read ? read.source : (source as StoreSource);
    let manifest: ModelManifest | null | undefined, key: string, form: WeightForm;
    if (src.kind === 'cached') {
      key = src.key;
      manifest = await this.cache?.get(key);
      if (!manifest) {
        throw new ModelFileError(`No complete cached model "${key}".`, 'It may have been deleted or never finished caching; load it from its source.', { key, reason: 'not-cached' });
      }
      form = manifestForm(manifest);
      // A cached entry is loaded in the form it holds; a caller that names another form is told so
      // rather than given this one.
      const asked = { storage: opts.storage ?? form.storage, doubleQuant: opts.doubleQuant ?? form.doubleQuant };
      if (!sameForm(asked, form)) {
        throw new UsageError(`The cached model "${manifest.name}" holds ${formLabel(manifest.quant, form)}, not the ${formLabel(manifest.quant, asked)} this load asked for.`,
          'Load the model from its source with these settings (it is then cached in that form too), or load the cached entry with its own settings.',
          { key, field: asked.storage !== form.storage ? 'storage' : 'double-quant', cached: formLabel(manifest.quant, form), asked: formLabel(manifest.quant, asked) });
      }
    } else {
      // With a fit request, a model read from its source is loaded in the form of the run it plans
      // (the CLI's --storage and --double-quant, the site's training form), unless told otherwise.
      const run = opts.fit?.settings;
      form = { storage: opts.storage ?? run?.storage ?? F32_FORM.storage, doubleQuant: quant === 'nf4' && (opts.doubleQuant ?? run?.doubleQuant ?? F32_FORM.doubleQuant) };
      key = cacheKey(src, quant, form);
      manifest = await this.cache?.get(key);
    }
    if (manifest) this.checkForm(manifest);
    // The fit check plans the form that will be loaded: the run's own (so a suggestion that changes
    // the storage or double quantization changes what is loaded, from the cache where that form is
    // there), or a form fixed apart from it (a cached entry's, or one the caller named).
    const run = opts.fit?.settings;
    const fixed = src.kind === 'cached' || (run && !sameForm(form, { storage: run.storage, doubleQuant: quant === 'nf4' && run.doubleQuant })) ? form : undefined;
    const fit = (name: string) => async (cfg: ModelConfig) => this.checkFit(name, cfg, manifest?.quant ?? quant, opts, fixed);
    if (manifest) {
      await fit(manifest.name)(parseModelConfig(manifest.config, `${manifest.name}: config.json`));
      this.unload();
      this.base = await this.fromCache(await this.device(), manifest, src, onEvent, opts);
    } else {
      // Every file is read and checked before the GPU is touched; a download stops after config.json
      // when the model does not fit.
      const files = read ?? (await this.read(src, quant, onEvent, fit(sourceName(src))));
      if (read) await fit(read.name)(read.config);
      this.unload();
      this.base = await this.fromFiles(await this.device(), files, key, quant, form, onEvent, opts);
    }
    return this.base.info;
  }

  /** A cache entry whose recorded form is not the one its key names is never loaded as either: it is
   *  dropped, with a typed error naming both. */
  private checkForm(m: ModelManifest): void {
    const recorded = manifestForm(m), named = formOfKey(m.key);
    if (sameForm(recorded, named)) return;
    void this.cache?.delete(m.key).catch(() => {});
    throw new ModelFileError(`The cached copy of "${m.name}" records ${formLabel(m.quant, recorded)} under the key of ${formLabel(m.quant, named)}. The cache entry was deleted.`,
      'Load the model again from its source; it will be quantized and cached afresh.',
      { file: `model/${m.key}/manifest`, key: m.key, field: recorded.storage !== named.storage ? 'storage' : 'doubleQuant', reason: 'cache-form-mismatch' });
  }

  private maxPositions(cfg: ModelConfig, opts: LoadOptions): number {
    return opts.maxPositions ?? Math.min(cfg.maxPositionEmbeddings, this.host.maxPositions ?? 4096);
  }

  /** Throws ModelTooLargeError when `opts.fit`'s run does not fit this device (load calls it before
   *  any weight is read; the CLI also calls it before reading the dataset). `form`: the weight form
   *  when the load fixes it apart from the run's settings (a cached entry's); absent, the base is
   *  loaded in the run's form, so the tables follow its storage and double quantization is a knob. */
  async checkFit(name: string, cfg: ModelConfig, quant: Quant, opts: LoadOptions, form?: WeightForm): Promise<void> {
    const f = opts.fit;
    if (!f) return;
    const gpu = await this.device();
    requireFit(name, {
      dims: cfg, quant, doubleQuantKnob: !form, ...(form ? { tableStorage: form.storage } : {}),
      ...(f.positionsFollowRun ? {} : { maxPositions: this.maxPositions(cfg, opts) }),
    }, form ? { ...f.settings, doubleQuant: form.doubleQuant } : f.settings, { budget: f.budget, limits: gpu.limits }, f.flags);
  }

  private basePlan(gpu: Gpu, cfg: ModelConfig, quant: Quant, form: WeightForm, opts: LoadOptions): Plan {
    const maxPositions = this.maxPositions(cfg, opts);
    return new Plan(cfg, { batch: 1, seqLen: 1, quant, doubleQuant: form.doubleQuant, storage: form.storage, training: false, checkpointing: false, maxPositions, limits: gpu.limits });
  }

  private info(key: string, name: string, cfg: ModelConfig, quant: Quant, form: WeightForm, tok: LoadedTokenizer, fromCache: boolean): ModelInfo {
    const params = expectedWeights(cfg).reduce((s, w) => s + w.shape.reduce((a, b) => a * b, 1), 0);
    return { key, name, arch: cfg.arch, params, vocabSize: cfg.vocabSize, layers: cfg.numLayers, hiddenSize: cfg.hiddenSize, quant, form: { ...form }, hasChatTemplate: tok.hasChatTemplate, fromCache };
  }

  private async fromFiles(gpu: Gpu, f: ModelFiles, key: string, quant: Quant, form: WeightForm, onEvent: ((e: LoadEvent) => void) | undefined, opts: LoadOptions): Promise<Base> {
    const plan = this.basePlan(gpu, f.config, quant, form, opts);
    // Refuse a weight that cannot exist on this device before uploading anything.
    for (const r of plan.rows) {
      if (r.phase === 'weights' && r.bytes > gpu.limits.maxBufferSize) throw new GpuOutOfMemoryError(r.name, r.bytes, plan.byCategory(), gpu.limits.maxBufferSize);
    }
    const weights = await loadWeights(gpu, f.folder, f.config, plan, (p) => void emit(onEvent, { phase: 'quantize', tensor: p.tensor, done: p.done, total: p.total }));
    const base: Base = { key, name: f.name, source: f.source, quant, config: f.config, plan, weights, tokenizer: f.tokenizer, info: this.info(key, f.name, f.config, quant, form, f.tokenizer, false) };
    if (this.cache) {
      try {
        await this.writeCache(gpu, base, f, onEvent);
      } catch (e) {
        this.freeBase(base);
        throw e;
      }
    }
    return base;
  }

  private async writeCache(gpu: Gpu, base: Base, f: ModelFiles, onEvent?: (e: LoadEvent) => void): Promise<void> {
    await this.cache!.writing(base.key, () => this.writeCacheLocked(gpu, base, f, onEvent));
  }

  private async writeCacheLocked(gpu: Gpu, base: Base, f: ModelFiles, onEvent?: (e: LoadEvent) => void): Promise<void> {
    const writer = await this.cache!.begin({
      key: base.key, name: base.name, source: base.source.kind === 'hub' ? 'hub' : base.source.kind === 'demo' ? 'demo' : 'files',
      revision: f.revision, quant: base.quant, storage: base.info.form.storage, doubleQuant: base.info.form.doubleQuant,
      config: JSON.parse(f.texts['config.json']) as Record<string, unknown>, files: f.texts,
    });
    try {
      const total = base.config.numLayers + 1;
      let done = 0;
      for await (const s of weightShards(gpu, base.plan)) {
        this.checkCancelled(base.name);
        await writer.addShard(s.id, s.pieces, s.data);
        void emit(onEvent, { phase: 'cache', done: Math.min(++done, total), total: Math.max(total, done) });
      }
      this.checkCancelled(base.name);
      await writer.commit();
    } catch (e) {
      await writer.abort();
      throw e;
    }
  }

  private async fromCache(gpu: Gpu, m: ModelManifest, source: StoreSource, onEvent: ((e: LoadEvent) => void) | undefined, opts: LoadOptions): Promise<Base> {
    const cfg = parseModelConfig(m.config, `${m.name}: config.json`);
    const tokenizer = loadTokenizerFromText(m.files['tokenizer.json'], m.files['tokenizer_config.json'], m.name);
    const form = manifestForm(m);
    const plan = this.basePlan(gpu, cfg, m.quant, form, opts);
    const cache = this.cache!;
    async function* shards() {
      for (const s of m.shards) yield { id: s.id, pieces: s.pieces, data: await cache.readShard(m, s) };
    }
    let weights;
    try {
      weights = await loadCachedWeights(gpu, cfg, plan, shards(), (done) => void emit(onEvent, { phase: 'upload', done, total: m.shards.length }));
      await gpu.check();
    } catch (e) {
      for (const r of plan.rows) plan.free(gpu, r.name);
      if (e instanceof ModelFileError && e.details.reason === 'cache-mismatch') await cache.delete(m.key);
      throw e;
    }
    const src: StoreSource = source.kind === 'cached' ? source : { kind: 'cached', key: m.key };
    const origin: ModelSource | undefined = m.source === 'demo' ? { kind: 'demo' } : m.source === 'hub' ? { kind: 'hub', id: m.name, ...(m.revision ? { revision: m.revision } : {}) } : undefined;
    const info = { ...this.info(m.key, m.name, cfg, m.quant, form, tokenizer, true), ...(origin ? { origin } : {}) };
    return { key: m.key, name: m.name, source: src, quant: m.quant, config: cfg, plan, weights, tokenizer, info };
  }

  private freeBase(b: Base): void {
    if (!this.gpu) return;
    for (const r of b.plan.rows) b.plan.free(this.gpu, r.name);
  }

  /** Frees every run and the base. */
  unload(): void {
    for (const r of this.runs) r.dispose();
    this.runs.clear();
    if (this.base) this.freeBase(this.base);
    this.base = undefined;
  }

  // ------------------------------------------------------------------------------------ runs

  /** A run over the loaded weights (training, inference, another LoRA spec); freed by `close`. */
  async open(opts: Omit<OpenOptions, 'quant'>): Promise<DerivedModel> {
    const base = this.requireModel();
    const run = await openOverWeights(await this.device(), base, { ...opts, quant: base.quant });
    this.runs.add(run);
    return run;
  }

  /** An inference run carrying a PEFT adapter read with model/adapter.ts importAdapter. */
  async openAdapter(a: ImportedAdapter, shape: { batch: number; seqLen: number } = { batch: 1, seqLen: 1 }): Promise<DerivedModel> {
    const run = await this.open({ ...shape, lora: a.spec, training: false });
    run.lora!.load(a.weights);
    return run;
  }

  close(run: DerivedModel | undefined): void {
    if (!run || !this.runs.delete(run)) return;
    run.dispose();
  }

  /**
   * After a lost device: a new device and the base back, from the cache (or its source if it never
   * got cached). Every run died with the old device and is forgotten, not freed.
   */
  async recover(): Promise<void> {
    const base = this.requireModel();
    const old = this.gpu;
    this.gpu = undefined;
    try {
      old?.destroy();
    } catch {
      // already gone
    }
    this.runs.clear();
    this.base = undefined;
    const cached = await this.isCached(base.key);
    const { storage, doubleQuant } = base.info.form;
    await this.load(cached ? { kind: 'cached', key: base.key } : base.source, base.quant, undefined, { maxPositions: base.plan.opts.maxPositions, storage, doubleQuant });
  }
}

/** The small text files a cache entry keeps, read from the folder unless the download gave them. */
async function folderTexts(folder: ModelFolder, have: Record<string, string>): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const read = async (src: ByteSource | null, file: string, required: boolean) => {
    if (have[file] !== undefined) return;
    if (!src) {
      if (required) throw new ModelFileError(`The model has no ${file}.`, 'Include the tokenizer files (tokenizer.json, tokenizer_config.json) with the model.', { file, reason: 'missing-file' });
      return;
    }
    out[file] = new TextDecoder().decode(await src.read(0, src.size));
  };
  await read(folder.tokenizer, 'tokenizer.json', true);
  await read(folder.tokenizerConfig, 'tokenizer_config.json', true);
  await read(folder.generationConfig, 'generation_config.json', false);
  out['config.json'] = have['config.json'] ?? JSON.stringify(folder.config);
  return out;
}
