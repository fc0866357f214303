// The engine behind EngineApi: a thin façade over the application layer (src/app/) that the CLI
// uses too. ModelStore holds the device, the base model and its cache; TrainingRun the run with its
// checkpoints; Chat the generation. This class adds what only the site has: a prepared dataset kept
// between calls, one thing at a time (no model load during training), the checkpoint store, browser
// storage, and adapter files dropped on the page. It is host-neutral (no DOM, no Worker API):
// engine.worker.ts gives it IndexedDB, fetch and navigator.storage and exposes it over comlink; Node
// tests and the e2e page give it other stores and fetches.
import type { Gpu } from '../gpu/runtime.ts';
import { capabilities, selfTest, type Capabilities, type SelfTestResult } from '../app/selftest.ts';
import { AdapterFileError, ModelFileError, UsageError } from '../errors.ts';
import { blobSource } from '../io/byte-source.ts';
import type { KeyValueStore } from '../io/cache.ts';
import { pickleRefusal } from '../io/safetensors.ts';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE } from '../io/peft.ts';
import { exportAdapter as exportPeft, importAdapter as importPeft } from '../model/adapter.ts';
import type { DerivedModel } from '../model/open.ts';
import type { Proj } from '../model/lora.ts';
import { prepareDataset as runPipeline } from '../data/pipeline.ts';
import type { Sequence } from '../data/types.ts';
import type { TemplateName } from '../data/templates.ts';
import { CheckpointStore } from '../train/checkpoint.ts';
import { sink } from '../app/events.ts';
import { ModelStore, type ModelStoreHost } from '../app/model-store.ts';
import { DEFAULT_MEMORY_BUDGET, TrainingRun, metricsCsv } from '../app/training-run.ts';
import { checkTrainOptions } from '../app/options.ts';
import { Chat } from '../app/chat.ts';
import type {
  CachedModel, CheckpointInfo, DataOptions, DatasetSummary, EngineApi, Estimate, GenerateOptions, LoadEvent, ModelInfo,
  ModelSource, StorageInfo, TrainEvent, TrainOptions,
} from './api.ts';

export { cacheKey } from '../app/model-store.ts';
export { DEFAULT_MEMORY_BUDGET } from '../app/training-run.ts';

export interface EngineHost extends ModelStoreHost {
  store: KeyValueStore;
  createGpu?: () => Promise<Gpu>;
  /** navigator.storage where there is one. */
  storage?: { estimate(): Promise<{ usage?: number; quota?: number }>; persisted?(): Promise<boolean>; persist?(): Promise<boolean> };
  /** GPU bytes a plan may peak at and still "fit" (WebGPU does not tell how much memory a GPU has). */
  memoryBudget?: number;
}

interface Dataset {
  file: string;
  template: TemplateName;
  train: Sequence[];
  validation: Sequence[];
}

export class Engine implements EngineApi {
  protected readonly models: ModelStore;
  private readonly checkpoints: CheckpointStore<CheckpointInfo>;
  private readonly chat: Chat;
  private dataset: Dataset | undefined;
  /** The current (or last) training run; its model is the adapter chat and export use. */
  private run: TrainingRun | undefined;
  /** An adapter imported from PEFT files (instead of a trained one). */
  private imported: DerivedModel | undefined;
  /** Loads run one at a time (a second waits for the first). */
  private loading: Promise<unknown> = Promise.resolve();

  constructor(readonly host: EngineHost) {
    this.models = new ModelStore(host);
    this.checkpoints = new CheckpointStore<CheckpointInfo>(host.store);
    this.chat = new Chat(this.models);
  }

  private get training(): boolean {
    return this.run?.active ?? false;
  }

  private busy(what: string): void {
    if (this.training) throw new UsageError('A training run is in progress.', `Pause or stop it before ${what}.`);
  }

  async capabilities(): Promise<Capabilities> {
    return capabilities(await this.models.device());
  }

  async selfTest(): Promise<SelfTestResult> {
    return selfTest(await this.models.device());
  }

  /** After a loss outside training: a new device, the model back from the cache, the run from its
   *  last checkpoint. */
  private async ensureAlive(): Promise<void> {
    if (!this.models.lost || !this.models.base) return;
    this.chat.reset(true);
    this.imported = undefined;
    await this.models.recover();
    if (this.run) await this.run.reopen(this.checkpoints);
    this.chat.adapter = this.run?.model;
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
    return this.models.listCached();
  }

  async deleteCachedModel(key: string): Promise<void> {
    await this.models.deleteCached(key);
  }

  // ------------------------------------------------------------------------------------ models

  async loadModel(source: ModelSource, quant: 'nf4' | 'none', onEvent: (e: LoadEvent) => void): Promise<ModelInfo> {
    this.busy('loading another model');
    const events = sink(onEvent);
    const p = this.loading.then(async () => {
      const info = await this.loadModelNow(source, quant, events.send);
      await events.flushed();
      return info;
    });
    this.loading = p.catch(() => {});
    return p;
  }

  async cancelLoad(): Promise<void> {
    this.models.cancel();
  }

  private async loadModelNow(source: ModelSource, quant: 'nf4' | 'none', onEvent?: (e: LoadEvent) => void): Promise<ModelInfo> {
    this.dropRuns();
    this.dataset = undefined;
    return this.models.load(source, quant, onEvent);
  }

  /** Frees the training run, an imported adapter and chat's views (the store frees them with the base too). */
  private dropRuns(): void {
    this.chat.reset();
    this.run?.dispose();
    this.run = undefined;
    this.models.close(this.imported);
    this.imported = undefined;
  }

  // ------------------------------------------------------------------------------------ data

  async prepareDataset(file: File, opts: DataOptions): Promise<DatasetSummary> {
    const base = this.models.requireModel();
    this.busy('changing the dataset');
    if (!Number.isInteger(opts.seqLen) || opts.seqLen < 2) throw new UsageError(`Invalid sequence length ${opts.seqLen}.`, 'Use an integer of at least 2.', { field: 'seqLen' });
    const d = await runPipeline({ name: file.name, data: file }, base.tokenizer, {
      template: opts.template, shape: opts.shape, maxLength: opts.seqLen, validation: opts.validation,
      skipBadRows: opts.skipBadRows, seed: opts.seed, shuffle: true,
    });
    this.dataset = { file: d.file, template: d.template, train: d.train, validation: d.validation };
    return {
      file: d.file, format: d.format, shape: d.shape, template: d.template, columns: d.columns, stats: d.stats, preview: d.preview,
      problems: d.problems, trainExamples: d.train.length, validationExamples: d.validation.length,
    };
  }

  // ------------------------------------------------------------------------------------ training

  async estimate(opts: TrainOptions): Promise<Estimate> {
    return TrainingRun.estimate(this.models, opts, this.dataset?.train.length ?? 0, this.host.memoryBudget ?? DEFAULT_MEMORY_BUDGET);
  }

  async train(opts: TrainOptions, onEvent: (e: TrainEvent) => void): Promise<void> {
    if (this.training) throw new UsageError('A training run is already in progress.', 'Pause or stop it first.');
    checkTrainOptions(opts);
    this.models.requireModel();
    await this.ensureAlive();
    const ds = this.dataset;
    if (!ds) throw new UsageError('No dataset is prepared.', 'Drop a dataset file first.');
    this.dropRuns(); // the new run needs the memory
    this.run = await TrainingRun.start(this.models, opts, ds, { datasetFile: ds.file, template: ds.template });
    this.chat.adapter = this.run.model;
    await this.checkpoints.clear(); // a new run replaces the old run's checkpoint
    await this.loop(onEvent);
  }

  private async loop(onEvent: (e: TrainEvent) => void): Promise<void> {
    const run = this.run!;
    await run.train((e) => {
      // Chat's views died with a lost device; the recovered run is the adapter now.
      if (e.type === 'device-lost') {
        this.chat.reset(true);
        this.chat.adapter = run.model;
      }
      return onEvent(e);
    }, this.checkpoints);
  }

  async pause(): Promise<void> {
    this.run?.pause();
  }

  async stop(): Promise<void> {
    this.run?.stop();
  }

  async pendingCheckpoint(): Promise<CheckpointInfo | null> {
    return this.checkpoints.info();
  }

  async resumeTraining(onEvent: (e: TrainEvent) => void): Promise<void> {
    if (this.training) throw new UsageError('A training run is already in progress.', 'Pause or stop it first.');
    await this.ensureAlive();
    if (!this.run) {
      // After a reload: everything comes from the checkpoint (and the model from the cache).
      const ck = await this.checkpoints.load();
      if (!ck) throw new UsageError('There is no training run to resume.', 'Start a new run.');
      const key = ck.info.modelKey;
      if (this.models.base?.key !== key) {
        if (!(await this.models.isCached(key))) {
          throw new ModelFileError(`The checkpoint belongs to model "${key}", which is not cached any more.`,
            'Load that model from its source, then resume.', { key, reason: 'not-cached' });
        }
        await this.loadModelNow({ kind: 'cached', key }, key.endsWith(':none') ? 'none' : 'nf4');
      }
      this.dropRuns();
      this.run = await TrainingRun.resume(this.models, ck);
      this.chat.adapter = this.run.model;
      // The page lost its chart with the reload: replay the curve so far, then go on from there.
      this.run.replay(onEvent);
    }
    await this.loop(onEvent);
  }

  // ------------------------------------------------------------------------------------ adapters

  private get adapter(): DerivedModel | undefined {
    return this.imported ?? this.run?.model;
  }

  async exportAdapter(): Promise<Record<string, Uint8Array>> {
    const base = this.models.requireModel();
    await this.ensureAlive();
    const lora = this.adapter?.lora;
    if (!lora) throw new UsageError('There is no adapter to export.', 'Train or import an adapter first.');
    return exportPeft(lora, base.source.kind === 'hub' ? base.source.id : base.name);
  }

  async importAdapter(files: File[]): Promise<{ rank: number; targets: Proj[] }> {
    const base = this.models.requireModel();
    this.busy('importing an adapter');
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
    this.dropRuns();
    // Batch 1, one position: generation makes its own KV-cache view over it.
    this.imported = await this.models.openAdapter(a);
    this.chat.adapter = this.imported;
    return { rank: a.spec.rank, targets: a.spec.targets };
  }

  async metricsCsv(): Promise<string> {
    return metricsCsv(this.run?.logs ?? []);
  }

  // ------------------------------------------------------------------------------------ generation

  async generate(prompt: string, opts: GenerateOptions, onText: (piece: string) => void): Promise<string> {
    this.models.requireModel();
    await this.ensureAlive();
    return (await this.chat.generate(prompt, opts, onText)).text;
  }

  async stopGeneration(): Promise<void> {
    this.chat.stop();
  }
}
