// The engine behind EngineApi: one object that owns the GPU device, the loaded base model, the
// prepared dataset, the training run and generation. It is host-neutral (no DOM, no Worker API):
// engine.worker.ts gives it IndexedDB, fetch and navigator.storage and exposes it over comlink; Node
// tests and the e2e page give it other stores and fetches.
//
// Shape of the state:
//   base     the weights on the GPU under a weights-only plan (loaded once per model)
//   run      a model over those weights with a LoRA adapter: the training plan while training (or
//            after), an inference plan after an adapter import
//   bare     a model without LoRA, made lazily to chat with the base before any adapter exists
//   gen      the KV-cache generation view of run or bare, kept between calls
// Each is rebuilt from the one above when that changes; a lost device rebuilds them all, the weights
// coming from the IndexedDB cache and the run from the last checkpoint.
import { Gpu } from '../gpu/runtime.ts';
import { capabilities, selfTest, type Capabilities, type SelfTestResult } from '../gpu/selftest.ts';
import { AdapterFileError, DeviceLostError, ModelFileError, UsageError } from '../errors.ts';
import { blobSource, type ByteSource } from '../io/byte-source.ts';
import { ModelCache, type KeyValueStore, type ModelManifest } from '../io/cache.ts';
import { hubBaseUrl, remoteModel, type DownloadProgress } from '../io/hub.ts';
import { openModelFolder, type ModelFolder } from '../io/model-folder.ts';
import { pickleRefusal } from '../io/safetensors.ts';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE } from '../io/peft.ts';
import { parseModelConfig, type ModelConfig } from '../model/config.ts';
import { loadWeights } from '../model/load.ts';
import { loadCachedWeights, weightShards } from '../model/load-cached.ts';
import { openOverWeights, type DerivedModel, type LoadedBase } from '../model/open.ts';
import { Plan } from '../model/plan.ts';
import { expectedWeights } from '../model/weights.ts';
import { exportAdapter as exportPeft, importAdapter as importPeft } from '../model/adapter.ts';
import type { LoraSpec } from '../model/lora.ts';
import { loadTokenizerFromText, type LoadedTokenizer } from '../data/tokenizer.ts';
import { prepareDataset as runPipeline } from '../data/pipeline.ts';
import type { Sequence } from '../data/types.ts';
import type { TemplateName } from '../data/templates.ts';
import { Trainer, type StepLog, type TrainConfig } from '../train/trainer.ts';
import { CheckpointStore, type CheckpointState } from '../train/checkpoint.ts';
import { generationModel, type GenerationModel } from '../infer/kv-open.ts';
import { encodePrompt, generateText } from '../infer/text.ts';
import type {
  CachedModel, CheckpointInfo, DataOptions, DatasetSummary, EngineApi, Estimate, GenerateOptions, LoadEvent, ModelInfo,
  ModelSource, StorageInfo, TrainEvent, TrainOptions,
} from './api.ts';

type Fetch = (input: string, init?: RequestInit) => Promise<Response>;

export interface EngineHost {
  store: KeyValueStore;
  fetch: Fetch;
  /** Absolute URL of the shipped demo model folder, ending in "/". */
  demoUrl: string;
  createGpu?: () => Promise<Gpu>;
  /** navigator.storage where there is one. */
  storage?: { estimate(): Promise<{ usage?: number; quota?: number }>; persisted?(): Promise<boolean>; persist?(): Promise<boolean> };
  /** GPU bytes a plan may peak at and still "fit" (WebGPU does not tell how much memory a GPU has). */
  memoryBudget?: number;
  /** RoPE rows the base is loaded with (the longest sequence any run may use); default
   *  min(max_position_embeddings, 4096). */
  maxPositions?: number;
}

/** 4 GiB: what an integrated GPU or a mid-range card can give one tab without trouble. */
export const DEFAULT_MEMORY_BUDGET = 4 * 1024 ** 3;

interface Base extends LoadedBase {
  key: string;
  name: string;
  source: ModelSource;
  quant: 'nf4' | 'none';
  tokenizer: LoadedTokenizer;
  info: ModelInfo;
}

interface Session {
  opts: TrainOptions;
  datasetFile: string;
  /** Recorded in checkpoints for the chat's framing; unknown for checkpoints saved before that. */
  template: TemplateName | undefined;
  data: { train: Sequence[]; validation: Sequence[] };
  run: DerivedModel;
  trainer: Trainer;
  logs: StepLog[];
}

interface Dataset {
  file: string;
  template: TemplateName;
  train: Sequence[];
  validation: Sequence[];
  seqLen: number;
}

const LOST_WAIT_MS = 2000;

/** Calls a listener (a comlink proxy on the page, a plain function in tests). The returned promise
 *  settles once the page has handled the event: awaiting the last event of a run before resolving
 *  train() matters because comlink delivers proxy calls and return values on different ports, so
 *  "done" could otherwise reach the page after train() resolved there. Never rejects: a page that
 *  went away must not crash the worker. */
function emit<E>(fn: ((e: E) => void) | undefined, e: E): Promise<void> {
  if (!fn) return Promise.resolve();
  try {
    const r = fn(e) as unknown;
    if (r && typeof (r as Promise<unknown>).then === 'function') return (r as Promise<unknown>).then(() => {}, () => {});
  } catch {
    // the listener's problem, not the engine's
  }
  return Promise.resolve();
}

/** A listener whose events are sent without waiting, and whose last event can be awaited. */
function sink<E>(fn: ((e: E) => void) | undefined): { send: (e: E) => void; flushed: () => Promise<void> } {
  let last = Promise.resolve();
  return { send: (e) => void (last = emit(fn, e)), flushed: () => last };
}

/** The cache key of a model source and quantization. */
export function cacheKey(source: ModelSource, quant: 'nf4' | 'none'): string {
  switch (source.kind) {
    case 'demo':
      return `demo:${quant}`;
    case 'hub':
      return `hub:${source.id.trim()}@${source.revision || 'main'}:${quant}`;
    case 'files': {
      // A dropped folder has no id: its name, and the sizes and dates of its weight files.
      const folder = folderName(source.files);
      const sig = source.files.filter((f) => f.name.endsWith('.safetensors')).map((f) => `${f.size}.${f.lastModified}`).sort().join(',');
      return `files:${folder}:${sig}:${quant}`;
    }
    case 'cached':
      return source.key;
  }
}

function folderName(files: File[]): string {
  const rel = (files[0] as File & { webkitRelativePath?: string })?.webkitRelativePath;
  return rel && rel.includes('/') ? rel.split('/')[0] : 'local model';
}

function checkTrainOptions(o: TrainOptions): void {
  const bad = (field: string, want: string) =>
    new UsageError(`Invalid training option ${field}: ${JSON.stringify((o as unknown as Record<string, unknown>)[field])}.`, `${field} must be ${want}.`, { field });
  const int = (f: keyof TrainOptions, min: number) => {
    const v = o[f] as number;
    if (!Number.isInteger(v) || v < min) throw bad(f, `an integer >= ${min}`);
  };
  int('rank', 1); int('epochs', 1); int('batch', 1); int('gradAccum', 1); int('seqLen', 2); int('warmupSteps', 0); int('checkpointEvery', 1);
  if (o.maxSteps !== undefined && (!Number.isInteger(o.maxSteps) || o.maxSteps < 1)) throw bad('maxSteps', 'an integer >= 1');
  if (!(o.alpha > 0)) throw bad('alpha', 'a number > 0');
  if (!(o.dropout >= 0 && o.dropout < 1)) throw bad('dropout', 'in [0, 1)');
  if (!(o.lr >= 0)) throw bad('lr', 'a number >= 0');
  if (!(o.weightDecay >= 0)) throw bad('weightDecay', 'a number >= 0');
  if (!(o.maxGradNorm >= 0)) throw bad('maxGradNorm', 'a number >= 0');
  if (!Array.isArray(o.targets) || o.targets.length === 0) throw bad('targets', 'a non-empty list of projections');
  if (!Number.isInteger(o.seed)) throw bad('seed', 'an integer');
}

function loraSpec(o: TrainOptions): LoraSpec {
  return { rank: o.rank, alpha: o.alpha, dropout: o.dropout, rslora: o.rslora, targets: [...o.targets] };
}

function trainConfig(o: TrainOptions): TrainConfig {
  return {
    lr: o.lr, epochs: o.epochs, maxSteps: o.maxSteps, batch: o.batch, gradAccum: o.gradAccum, schedule: o.schedule,
    warmupSteps: o.warmupSteps, weightDecay: o.weightDecay, maxGradNorm: o.maxGradNorm, seed: o.seed, shuffle: true,
  };
}

export function totalSteps(trainExamples: number, o: Pick<TrainOptions, 'batch' | 'gradAccum' | 'epochs' | 'maxSteps'>): number {
  if (trainExamples <= 0) return 0;
  const perEpoch = Math.max(1, Math.ceil(Math.ceil(trainExamples / o.batch) / o.gradAccum));
  return o.maxSteps && o.maxSteps > 0 ? o.maxSteps : o.epochs * perEpoch;
}

export class Engine implements EngineApi {
  private gpu: Gpu | undefined;
  private readonly cache: ModelCache;
  private readonly checkpoints: CheckpointStore<CheckpointInfo>;
  private base: Base | undefined;
  private run: DerivedModel | undefined;
  private bare: DerivedModel | undefined;
  private gen: { view: GenerationModel; owner: DerivedModel; positions: number } | undefined;
  private dataset: Dataset | undefined;
  private session: Session | undefined;
  private training = false;
  private pauseRequested = false;
  private stopRequested = false;
  private stopGen = false;
  /** Loads run one at a time (a second waits for the first). */
  private loading: Promise<unknown> = Promise.resolve();

  constructor(readonly host: EngineHost) {
    this.cache = new ModelCache(host.store);
    this.checkpoints = new CheckpointStore<CheckpointInfo>(host.store);
  }

  // ------------------------------------------------------------------------------------ device

  private async device(): Promise<Gpu> {
    if (!this.gpu || this.gpu.lostError) this.gpu = await (this.host.createGpu ?? (() => Gpu.create()))();
    return this.gpu;
  }

  async capabilities(): Promise<Capabilities> {
    return capabilities(await this.device());
  }

  async selfTest(): Promise<SelfTestResult> {
    return selfTest(await this.device());
  }

  async simulateDeviceLoss(): Promise<void> {
    this.gpu?.device.destroy();
  }

  /** Whether `e` came from a lost device (waiting briefly: `lost` resolves after the failure). */
  private async isDeviceLoss(e: unknown): Promise<boolean> {
    if (e instanceof DeviceLostError) return true;
    const g = this.gpu;
    if (!g) return false;
    if (g.lostError) return true;
    const lost = await Promise.race([g.lost, new Promise<undefined>((r) => setTimeout(() => r(undefined), LOST_WAIT_MS))]);
    return lost !== undefined;
  }

  /** After a loss outside training: a new device and the model back from the cache. */
  private async ensureAlive(): Promise<void> {
    if (this.gpu && this.gpu.lostError && this.base) await this.recover();
  }

  // ------------------------------------------------------------------------------------ storage

  async storage(): Promise<StorageInfo> {
    const s = this.host.storage;
    const est = s ? await s.estimate() : {};
    const persisted = s?.persisted ? await s.persisted() : false;
    return { usage: est.usage ?? 0, quota: est.quota ?? 0, persisted };
  }

  async requestPersistence(): Promise<boolean> {
    const s = this.host.storage;
    return s?.persist ? s.persist() : false;
  }

  async listCachedModels(): Promise<CachedModel[]> {
    return (await this.cache.list()).map((m) => ({ key: m.key, name: m.name, revision: m.revision, bytes: m.totalBytes, savedAt: m.savedAt }));
  }

  async deleteCachedModel(key: string): Promise<void> {
    await this.cache.delete(key);
  }

  // ------------------------------------------------------------------------------------ models

  async loadModel(source: ModelSource, quant: 'nf4' | 'none', onEvent: (e: LoadEvent) => void): Promise<ModelInfo> {
    if (this.training) throw new UsageError('A training run is in progress.', 'Pause or stop it before loading another model.');
    const events = sink(onEvent);
    const p = this.loading.then(async () => {
      const info = await this.loadModelNow(source, quant, events.send);
      await events.flushed();
      return info;
    });
    this.loading = p.catch(() => {});
    return p;
  }

  private async loadModelNow(source: ModelSource, quant: 'nf4' | 'none', onEvent?: (e: LoadEvent) => void): Promise<ModelInfo> {
    const key = cacheKey(source, quant);
    const manifest = await this.cache.get(key);
    if (source.kind === 'cached' && !manifest) {
      throw new ModelFileError(`No complete cached model "${key}".`, 'It may have been deleted or never finished caching; load it from its source.', { key, reason: 'not-cached' });
    }
    this.unloadModel();
    const gpu = await this.device();
    if (manifest) {
      this.base = await this.fromCache(gpu, manifest, source, onEvent);
    } else {
      this.base = await this.fromSource(gpu, key, source, quant, onEvent);
    }
    return this.base.info;
  }

  private maxPositions(cfg: ModelConfig): number {
    return Math.min(cfg.maxPositionEmbeddings, this.host.maxPositions ?? 4096);
  }

  private basePlan(gpu: Gpu, cfg: ModelConfig, quant: 'nf4' | 'none'): Plan {
    const plan = new Plan(cfg, { batch: 1, seqLen: 1, quant, training: false, checkpointing: false, maxPositions: this.maxPositions(cfg), limits: gpu.limits });
    return plan;
  }

  private modelInfo(key: string, name: string, cfg: ModelConfig, quant: 'nf4' | 'none', tok: LoadedTokenizer, fromCache: boolean): ModelInfo {
    const params = expectedWeights(cfg).reduce((s, w) => s + w.shape.reduce((a, b) => a * b, 1), 0);
    return {
      key, name, arch: cfg.arch, params, vocabSize: cfg.vocabSize, layers: cfg.numLayers, hiddenSize: cfg.hiddenSize, quant,
      hasChatTemplate: tok.hasChatTemplate, fromCache,
    };
  }

  private async fromSource(gpu: Gpu, key: string, source: ModelSource, quant: 'nf4' | 'none', onEvent?: (e: LoadEvent) => void): Promise<Base> {
    let files: Record<string, ByteSource> | ByteSource[];
    let texts: Record<string, string> = {};
    let name: string;
    let revision: string | null = null;
    const onProgress = (p: DownloadProgress) => void emit(onEvent, { phase: 'download', ...p });
    if (source.kind === 'demo') {
      const r = await remoteModel(this.host.demoUrl, { fetch: this.host.fetch, onProgress });
      files = r.files;
      texts = r.texts;
      name = 'Demo model (tiny Llama)';
    } else if (source.kind === 'hub') {
      revision = source.revision || 'main';
      const headers: Record<string, string> = source.token ? { Authorization: `Bearer ${source.token}` } : {};
      const r = await remoteModel(hubBaseUrl(source.id, revision), { fetch: this.host.fetch, headers, onProgress });
      files = r.files;
      texts = r.texts;
      name = source.id.trim();
    } else if (source.kind === 'files') {
      files = source.files.map((f) => {
        const path = (f as File & { webkitRelativePath?: string }).webkitRelativePath || f.name;
        return blobSource(f, path);
      });
      name = folderName(source.files);
    } else {
      throw new Error('engine: cached sources are loaded from the cache');
    }
    const folder = await openModelFolder(files as ByteSource[]);
    const cfg = parseModelConfig(folder.config, folder.configFile);
    texts = { ...texts, ...(await this.folderTexts(folder, texts)) };
    const tokenizer = loadTokenizerFromText(texts['tokenizer.json'], texts['tokenizer_config.json'], name);
    // Everything is read and checked before the GPU is touched.
    const plan = this.basePlan(gpu, cfg, quant);
    const weights = await loadWeights(gpu, folder, cfg, plan, (p) => void emit(onEvent, { phase: 'quantize', tensor: p.tensor, done: p.done, total: p.total }));
    const base: Base = { key, name, source, quant, config: cfg, plan, weights, tokenizer, info: this.modelInfo(key, name, cfg, quant, tokenizer, false) };
    try {
      await this.writeCache(gpu, base, texts, revision, onEvent);
    } catch (e) {
      this.freeBase(base);
      throw e;
    }
    return base;
  }

  private async folderTexts(folder: ModelFolder, have: Record<string, string>): Promise<Record<string, string>> {
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

  private async writeCache(gpu: Gpu, base: Base, texts: Record<string, string>, revision: string | null, onEvent?: (e: LoadEvent) => void): Promise<void> {
    const writer = await this.cache.begin({
      key: base.key, name: base.name, source: base.source.kind === 'hub' ? 'hub' : base.source.kind === 'demo' ? 'demo' : 'files',
      revision, quant: base.quant, config: JSON.parse(texts['config.json']) as Record<string, unknown>, files: texts,
    });
    try {
      const layout = weightShards(gpu, base.plan);
      const total = base.config.numLayers + 1;
      let done = 0;
      for await (const s of layout) {
        await writer.addShard(s.id, s.pieces, s.data);
        void emit(onEvent, { phase: 'cache', done: Math.min(++done, total), total: Math.max(total, done) });
      }
      await writer.commit();
    } catch (e) {
      await writer.abort();
      throw e;
    }
  }

  private async fromCache(gpu: Gpu, m: ModelManifest, source: ModelSource, onEvent?: (e: LoadEvent) => void): Promise<Base> {
    const cfg = parseModelConfig(m.config, `${m.name}: config.json`);
    const tokenizer = loadTokenizerFromText(m.files['tokenizer.json'], m.files['tokenizer_config.json'], m.name);
    const plan = this.basePlan(gpu, cfg, m.quant);
    const cache = this.cache;
    const total = m.shards.length;
    async function* shards() {
      for (const s of m.shards) yield { id: s.id, pieces: s.pieces, data: await cache.readShard(m, s) };
    }
    let weights;
    try {
      weights = await loadCachedWeights(gpu, cfg, plan, shards(), (done) => void emit(onEvent, { phase: 'upload', done, total }));
      await gpu.check();
    } catch (e) {
      for (const r of plan.rows) plan.free(gpu, r.name);
      if (e instanceof ModelFileError && e.details.reason === 'cache-mismatch') await cache.delete(m.key);
      throw e;
    }
    return { key: m.key, name: m.name, source: source.kind === 'cached' ? source : { kind: 'cached', key: m.key }, quant: m.quant, config: cfg, plan, weights, tokenizer, info: this.modelInfo(m.key, m.name, cfg, m.quant, tokenizer, true) };
  }

  private freeBase(b: Base): void {
    if (!this.gpu) return;
    for (const r of b.plan.rows) b.plan.free(this.gpu, r.name);
  }

  private disposeRuns(): void {
    this.gen?.view.dispose();
    this.gen = undefined;
    this.run?.dispose();
    this.run = undefined;
    this.bare?.dispose();
    this.bare = undefined;
  }

  private unloadModel(): void {
    this.disposeRuns();
    this.session = undefined;
    this.dataset = undefined;
    if (this.base) this.freeBase(this.base);
    this.base = undefined;
  }

  private requireModel(): Base {
    if (!this.base) throw new UsageError('No model is loaded.', 'Load a model first (the demo model needs no download).');
    return this.base;
  }

  // ------------------------------------------------------------------------------------ data

  async prepareDataset(file: File, opts: DataOptions): Promise<DatasetSummary> {
    const base = this.requireModel();
    if (this.training) throw new UsageError('A training run is in progress.', 'Pause or stop it before changing the dataset.');
    if (!Number.isInteger(opts.seqLen) || opts.seqLen < 2) throw new UsageError(`Invalid sequence length ${opts.seqLen}.`, 'Use an integer of at least 2.', { field: 'seqLen' });
    const d = await runPipeline({ name: file.name, data: file }, base.tokenizer, {
      template: opts.template, shape: opts.shape, maxLength: opts.seqLen, validation: opts.validation,
      skipBadRows: opts.skipBadRows, seed: opts.seed, shuffle: true,
    });
    this.dataset = { file: d.file, template: d.template, train: d.train, validation: d.validation, seqLen: d.seqLen };
    return {
      file: d.file, format: d.format, shape: d.shape, template: d.template, columns: d.columns, stats: d.stats, preview: d.preview,
      problems: d.problems, trainExamples: d.train.length, validationExamples: d.validation.length,
    };
  }

  // ------------------------------------------------------------------------------------ training

  async estimate(opts: TrainOptions): Promise<Estimate> {
    const base = this.requireModel();
    checkTrainOptions(opts);
    const gpu = await this.device();
    const plan = new Plan(base.config, {
      batch: opts.batch, seqLen: opts.seqLen, quant: base.quant, lora: loraSpec(opts), training: true, checkpointing: opts.checkpointing,
      gradAccum: opts.gradAccum, maxPositions: base.plan.opts.maxPositions, limits: gpu.limits,
    });
    const peakBytes = plan.peakBytes();
    const withinLimits = plan.rows.every((r) => r.bytes <= gpu.limits.maxBufferSize) && opts.seqLen <= base.plan.opts.maxPositions;
    return {
      bytes: plan.byCategory(), peakBytes, fits: withinLimits && peakBytes <= (this.host.memoryBudget ?? DEFAULT_MEMORY_BUDGET),
      totalSteps: totalSteps(this.dataset?.train.length ?? 0, opts),
    };
  }

  /** A fresh run over the loaded weights: training plan, LoRA initialised from the seed. */
  private async newSession(opts: TrainOptions, data: { train: Sequence[]; validation: Sequence[] }, datasetFile: string, template: TemplateName | undefined): Promise<Session> {
    const base = this.requireModel();
    const gpu = await this.device();
    const longest = Math.max(0, ...data.train.map((s) => s.input_ids.length), ...data.validation.map((s) => s.input_ids.length));
    if (longest > opts.seqLen) {
      throw new UsageError(`The dataset has sequences of ${longest} tokens, longer than the training sequence length ${opts.seqLen}.`,
        `Prepare the dataset again with seqLen ${opts.seqLen}, or train with seqLen ${longest} or more.`, { field: 'seqLen' });
    }
    this.disposeRuns();
    this.session = undefined;
    const run = await openOverWeights(gpu, base, {
      quant: base.quant, batch: opts.batch, seqLen: opts.seqLen, lora: loraSpec(opts), training: true,
      checkpointing: opts.checkpointing, gradAccum: opts.gradAccum, seed: opts.seed,
    });
    this.run = run;
    const trainer = new Trainer(run.model, run.lora!, data, trainConfig(opts), base.tokenizer.padId);
    return { opts, datasetFile, template, data, run, trainer, logs: [] };
  }

  async train(opts: TrainOptions, onEvent: (e: TrainEvent) => void): Promise<void> {
    if (this.training) throw new UsageError('A training run is already in progress.', 'Pause or stop it first.');
    checkTrainOptions(opts);
    this.requireModel();
    await this.ensureAlive();
    const ds = this.dataset;
    if (!ds) throw new UsageError('No dataset is prepared.', 'Drop a dataset file first.');
    this.session = await this.newSession(opts, { train: ds.train, validation: ds.validation }, ds.file, ds.template);
    await this.checkpoints.clear(); // a new run replaces the old run's checkpoint
    await this.loop(onEvent);
  }

  async pause(): Promise<void> {
    if (this.training) this.pauseRequested = true;
  }

  async stop(): Promise<void> {
    if (this.training) this.stopRequested = true;
  }

  async pendingCheckpoint(): Promise<CheckpointInfo | null> {
    return this.checkpoints.info();
  }

  async resumeTraining(onEvent: (e: TrainEvent) => void): Promise<void> {
    if (this.training) throw new UsageError('A training run is already in progress.', 'Pause or stop it first.');
    await this.ensureAlive();
    if (!this.session) {
      // After a reload: everything comes from the checkpoint (and the model from the cache).
      const ck = await this.checkpoints.load();
      if (!ck) throw new UsageError('There is no training run to resume.', 'Start a new run.');
      if (!this.base || this.base.key !== ck.info.modelKey) {
        if (!(await this.cache.get(ck.info.modelKey))) {
          throw new ModelFileError(`The checkpoint belongs to model "${ck.info.modelKey}", which is not cached any more.`,
            'Load that model from its source, then resume.', { key: ck.info.modelKey, reason: 'not-cached' });
        }
        await this.loadModelNow({ kind: 'cached', key: ck.info.modelKey }, ck.info.modelKey.endsWith(':none') ? 'none' : 'nf4');
      }
      await this.restore(ck);
      // The page lost its chart with the reload: replay the curve so far, then go on from there.
      const s = this.session!;
      for (const log of s.logs) void emit(onEvent, { type: 'step', log, totalSteps: s.trainer.totalSteps, gpuBytes: { ...this.gpu!.bytes } });
    }
    await this.loop(onEvent);
  }

  /** Rebuilds the session from a checkpoint on the current device. */
  private async restore(ck: CheckpointState<CheckpointInfo>): Promise<void> {
    const s = await this.newSession(ck.info.options, { train: ck.train, validation: ck.validation }, ck.info.datasetFile, ck.info.template);
    const lora = s.run.lora!, gpu = this.gpu!;
    if (ck.params.length !== lora.totalFloats) {
      throw new ModelFileError(`The checkpoint's adapter has ${ck.params.length} values; this model's has ${lora.totalFloats}.`,
        'The checkpoint belongs to another model; start a new run.', { reason: 'checkpoint-mismatch' });
    }
    gpu.upload(lora.params, ck.params);
    gpu.upload(lora.m, ck.m);
    gpu.upload(lora.v, ck.v);
    lora.step = ck.loraStep;
    s.trainer.position = { ...ck.position };
    s.logs = [...ck.logs];
    this.session = s;
  }

  private async saveCheckpoint(): Promise<void> {
    const s = this.session!, base = this.base!, gpu = this.gpu!, lora = s.run.lora!;
    const [params, m, v] = [await gpu.readF32(lora.params, 0, lora.totalFloats), await gpu.readF32(lora.m, 0, lora.totalFloats), await gpu.readF32(lora.v, 0, lora.totalFloats)];
    await this.checkpoints.save({
      info: { modelKey: base.key, step: s.trainer.position.step, totalSteps: s.trainer.totalSteps, savedAt: Date.now(), options: s.opts, datasetFile: s.datasetFile, template: s.template },
      position: { ...s.trainer.position }, loraStep: lora.step, logs: s.logs, params, m, v, train: s.data.train, validation: s.data.validation,
    });
  }

  /** The training loop with checkpoints, pause/stop, and recovery from a lost device. */
  private async loop(onEvent: (e: TrainEvent) => void): Promise<void> {
    this.training = true;
    this.pauseRequested = this.stopRequested = false;
    try {
      for (;;) {
        try {
          const s = this.session!;
          const every = s.opts.checkpointEvery;
          for await (const log of s.trainer.run(() => this.pauseRequested || this.stopRequested)) {
            s.logs.push(log);
            void emit(onEvent, { type: 'step', log, totalSteps: s.trainer.totalSteps, gpuBytes: { ...this.gpu!.bytes } });
            if (log.step % every === 0 && log.step < s.trainer.totalSteps) {
              await this.saveCheckpoint();
              void emit(onEvent, { type: 'checkpoint', step: log.step });
            }
          }
          const step = s.trainer.position.step;
          await this.saveCheckpoint();
          void emit(onEvent, { type: 'checkpoint', step });
          if (this.stopRequested) await emit(onEvent, { type: 'stopped', step });
          else if (this.pauseRequested) await emit(onEvent, { type: 'paused', step });
          else await emit(onEvent, { type: 'done', step });
          return;
        } catch (e) {
          if (!(await this.isDeviceLoss(e))) throw e;
          const step = await this.recover();
          void emit(onEvent, { type: 'device-lost', resumedFromStep: step });
        }
      }
    } finally {
      this.training = false;
    }
  }

  /**
   * A new device, the model from the IndexedDB cache (or its source if it never got cached), and
   * the run from its last checkpoint (from step 0 with the same options when there is none yet).
   * Returns the step training resumes from.
   */
  private async recover(): Promise<number> {
    const base = this.requireModel();
    const session = this.session;
    const old = this.gpu;
    this.gpu = undefined;
    try {
      old?.destroy();
    } catch {
      // already gone
    }
    // Every GPU object died with the device: forget them without freeing.
    this.gen = undefined;
    this.run = undefined;
    this.bare = undefined;
    this.base = undefined;
    this.session = undefined;
    const ds = this.dataset;
    await this.loadModelNow((await this.cache.get(base.key)) ? { kind: 'cached', key: base.key } : base.source, base.quant);
    this.dataset = ds;
    if (!session) return 0;
    const ck = await this.checkpoints.load();
    if (ck && ck.info.modelKey === base.key) {
      await this.restore(ck);
      return ck.info.step;
    }
    this.session = await this.newSession(session.opts, session.data, session.datasetFile, session.template);
    return 0;
  }

  // ------------------------------------------------------------------------------------ adapters

  async exportAdapter(): Promise<Record<string, Uint8Array>> {
    const base = this.requireModel();
    await this.ensureAlive();
    if (!this.run?.lora) throw new UsageError('There is no adapter to export.', 'Train or import an adapter first.');
    return exportPeft(this.run.lora, base.source.kind === 'hub' ? base.source.id : base.name);
  }

  async importAdapter(files: File[]): Promise<{ rank: number; targets: LoraSpec['targets'] }> {
    const base = this.requireModel();
    if (this.training) throw new UsageError('A training run is in progress.', 'Pause or stop it before importing an adapter.');
    await this.ensureAlive();
    const byName = new Map(files.map((f) => [f.name, f]));
    const cfg = byName.get(ADAPTER_CONFIG_FILE), weights = byName.get(ADAPTER_WEIGHTS_FILE);
    if (!weights) {
      const pickle = files.find((f) => /\.(bin|pt|pth|ckpt|pkl)$/i.test(f.name));
      if (pickle) throw pickleRefusal(pickle.name, 'is a pickled PyTorch adapter');
    }
    if (!cfg || !weights) {
      const missing = !cfg ? ADAPTER_CONFIG_FILE : ADAPTER_WEIGHTS_FILE;
      throw new AdapterFileError(`${missing} is missing; got ${files.map((f) => f.name).join(', ') || 'no files'}.`,
        `Choose both ${ADAPTER_CONFIG_FILE} and ${ADAPTER_WEIGHTS_FILE} (as PEFT's save_pretrained writes them).`, { file: missing });
    }
    const a = await importPeft(base.config, blobSource(cfg, cfg.name), blobSource(weights, weights.name));
    const gpu = await this.device();
    this.disposeRuns();
    this.session = undefined;
    // Batch 1, one position: generation makes its own KV-cache view over it.
    const run = await openOverWeights(gpu, base, { quant: base.quant, batch: 1, seqLen: 1, lora: a.spec, training: false });
    run.lora!.load(a.weights);
    this.run = run;
    return { rank: a.spec.rank, targets: a.spec.targets };
  }

  async metricsCsv(): Promise<string> {
    const rows = ['step,loss,val_loss,lr,grad_norm,tokens_per_s'];
    for (const l of this.session?.logs ?? []) {
      rows.push([l.step, l.loss, l.val_loss ?? '', l.lr, l.grad_norm, l.tokens_per_s].join(','));
    }
    return rows.join('\n') + '\n';
  }

  // ------------------------------------------------------------------------------------ generation

  async generate(prompt: string, opts: GenerateOptions, onText: (piece: string) => void): Promise<string> {
    const base = this.requireModel();
    await this.ensureAlive();
    const gpu = await this.device();
    const promptIds = encodePrompt(base.tokenizer.hf, prompt, opts.chat);
    if (opts.adapter && !this.run?.lora) throw new UsageError('There is no fine-tuned adapter yet.', 'Train or import an adapter, or chat with the base model.');
    const maxPositions = base.plan.opts.maxPositions;
    const need = promptIds.length + opts.maxNewTokens;
    if (need > maxPositions) {
      throw new UsageError(`The prompt (${promptIds.length} tokens) plus ${opts.maxNewTokens} new tokens exceed the ${maxPositions} positions the model is loaded for.`,
        'Shorten the prompt or ask for fewer new tokens.', { field: 'maxNewTokens' });
    }
    // Views are sized in steps of 256 positions so a chat does not rebuild them every turn.
    const positions = Math.min(maxPositions, Math.ceil(need / 256) * 256);
    let owner = this.run;
    if (!owner) {
      this.bare ??= await openOverWeights(gpu, base, { quant: base.quant, batch: 1, seqLen: 1, training: false });
      owner = this.bare;
    }
    if (!this.gen || this.gen.owner !== owner || this.gen.positions < positions) {
      this.gen?.view.dispose();
      this.gen = undefined;
      this.gen = { view: generationModel(gpu, owner, positions), owner, positions };
    }
    this.stopGen = false;
    const text = sink(onText);
    const r = await generateText(this.gen.view.model, base.tokenizer.hf, prompt, {
      maxNewTokens: opts.maxNewTokens, temperature: opts.temperature, topK: opts.topK, topP: opts.topP, seed: opts.seed,
      chat: opts.chat, eosIds: base.config.eosTokenIds, noAdapter: !opts.adapter, onText: text.send,
      shouldStop: () => this.stopGen,
    });
    await text.flushed();
    return r.text;
  }

  async stopGeneration(): Promise<void> {
    this.stopGen = true;
  }
}
