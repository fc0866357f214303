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
import { blobSource, bytesSource } from '../io/byte-source.ts';
import { sha256Hex, type KeyValueStore } from '../io/cache.ts';
import { pickleRefusal } from '../io/safetensors.ts';
import { selectModules } from '../io/hf-names.ts';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, readAdapter } from '../io/peft.ts';
import { exportAdapter as exportPeft, importAdapter as importPeft, type ImportedAdapter } from '../model/adapter.ts';
import { DEFAULT_TOKENIZE } from '../data/tokenize.ts';
import { adapterToGguf } from '../export/gguf-lora.ts';
import { RUN_RECORD_FILE, buildRunRecord, parseRunRecord, runRecordJson, type RunRecord } from '../export/run-record.ts';
import { AdapterLibrary, defaultName, type LibraryEntry } from '../app/adapter-library.ts';
import type { DerivedModel } from '../model/open.ts';
import { prepareDataset as runPipeline } from '../data/pipeline.ts';
import type { Sequence } from '../data/types.ts';
import type { TemplateName } from '../data/templates.ts';
import { CheckpointStore } from '../train/checkpoint.ts';
import { sink } from '../app/events.ts';
import { ModelStore, modelOfKey, type ModelStoreHost, type WeightForm } from '../app/model-store.ts';
import { DEFAULT_MEMORY_BUDGET, TrainingRun, loraSpec, metricsCsv, trainConfig, type DatasetIdentity } from '../app/training-run.ts';
import { checkTrainOptions } from '../app/options.ts';
import { fitSettings, shapeFits, type ShapeFit } from '../app/fit.ts';
import { Chat } from '../app/chat.ts';
import type {
  AdapterExportFormat, CachedModel, CheckpointInfo, DataOptions, DatasetSummary, EngineApi, Estimate, GenerateOptions, LibraryList,
  ImportedInfo, LoadEvent, LoadFit, MergedFileEvent, ModelInfo, ModelSource, StorageInfo, TrainEvent, TrainOptions,
} from './api.ts';
import { writeMergedWeights } from '../export/merge.ts';
import { fileStem } from '../export/file-stem.ts';
import { trlProjectFiles, trlRow, type TrlRow } from '../export/trl.ts';
import { shuffled, splitValidation } from '../data/batch.ts';
import { zipStore } from '../io/zip.ts';
import type { StoreSource } from '../app/model-store.ts';

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
  identity: DatasetIdentity;
  /** The rows as TRL's SFTTrainer reads them, split as train/validation were (TRL export). */
  trl: { train: TrlRow[]; validation: TrlRow[] };
}

/** Library adapters kept opened for chat at once (each holds its LoRA weights and a small run on
 *  the GPU); switching back to one of these swaps without reading it from IndexedDB again. */
const MAX_OPENED = 3;

export class Engine implements EngineApi {
  protected readonly models: ModelStore;
  private readonly checkpoints: CheckpointStore<CheckpointInfo>;
  private readonly chat: Chat;
  private dataset: Dataset | undefined;
  /** The current (or last) training run; its model is the adapter chat and export use. */
  private run: TrainingRun | undefined;
  /** An adapter imported from PEFT files (instead of a trained one). */
  private imported: DerivedModel | undefined;
  private readonly library: AdapterLibrary;
  /** The library id of the current adapter (the trained run's once saved, or the imported one's). */
  private currentId: string | undefined;
  /** Library adapters opened over the loaded base for chat, least recently used first. */
  private readonly opened = new Map<string, DerivedModel>();
  /** Loads run one at a time (a second waits for the first). */
  private loading: Promise<unknown> = Promise.resolve();

  constructor(readonly host: EngineHost) {
    this.models = new ModelStore(host);
    this.checkpoints = new CheckpointStore<CheckpointInfo>(host.store);
    this.chat = new Chat(this.models);
    this.library = new AdapterLibrary(host.store);
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
    if (this.imported) this.currentId = undefined;
    this.imported = undefined;
    this.opened.clear(); // died with the device
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

  async loadModel(source: ModelSource, quant: 'nf4' | 'none', onEvent: (e: LoadEvent) => void, fit?: LoadFit, form?: Partial<WeightForm>): Promise<ModelInfo> {
    this.busy('loading another model');
    const events = sink(onEvent);
    const p = this.loading.then(async () => {
      const info = await this.loadModelNow(source, quant, events.send, fit, form);
      await events.flushed();
      return info;
    });
    this.loading = p.catch(() => {});
    return p;
  }

  async cancelLoad(): Promise<void> {
    this.models.cancel();
  }

  private async loadModelNow(source: ModelSource, quant: 'nf4' | 'none', onEvent?: (e: LoadEvent) => void, fit?: LoadFit, form: Partial<WeightForm> = {}): Promise<ModelInfo> {
    const request = fit && { settings: fitSettings(checkTrainOptions(fit.options)), budget: fit.budget ?? this.memoryBudget };
    this.dropRuns();
    this.dataset = undefined;
    return this.models.load(source, quant, onEvent, { ...(request ? { fit: request } : {}), ...form });
  }

  private get memoryBudget(): number {
    return this.host.memoryBudget ?? DEFAULT_MEMORY_BUDGET;
  }

  /** Frees the training run, an imported adapter and chat's views (the store frees them with the base too). */
  private dropRuns(): void {
    this.chat.reset();
    this.run?.dispose();
    this.run = undefined;
    this.models.close(this.imported);
    this.imported = undefined;
    for (const m of this.opened.values()) this.models.close(m);
    this.opened.clear();
    this.currentId = undefined;
  }

  // ------------------------------------------------------------------------------------ data

  async prepareDataset(file: File, opts: DataOptions): Promise<DatasetSummary> {
    const base = this.models.requireModel();
    this.busy('changing the dataset');
    if (!Number.isInteger(opts.seqLen) || opts.seqLen < 2) throw new UsageError(`Invalid sequence length ${opts.seqLen}.`, 'Use an integer of at least 2.', { field: 'seqLen' });
    const rows: TrlRow[] = [];
    const d = await runPipeline({ name: file.name, data: file }, base.tokenizer, {
      template: opts.template, shape: opts.shape, maxLength: opts.seqLen, validation: opts.validation,
      skipBadRows: opts.skipBadRows, seed: opts.seed, shuffle: true,
      onExample: (ex, rendered) => rows.push(trlRow(ex, rendered)),
    });
    // onExample sees the examples in the order the pipeline keeps them: the same shuffle and split
    // give the rows of each example in train and validation.
    const trl = splitValidation(shuffled(rows, opts.seed), opts.validation);
    // The run record names the dataset by size and SHA-256. WebCrypto has no streaming digest; the
    // site's datasets are read whole by the pipeline's limits anyway.
    const sha256 = await sha256Hex(new Uint8Array(await file.arrayBuffer()));
    const identity: DatasetIdentity = {
      record: {
        file: d.file, bytes: file.size, sha256, format: d.format, shape: d.shape, template: d.template, columns: { ...d.columns },
        rowsRead: d.rowsRead, skippedRows: d.problems.length, trainExamples: d.train.length, validationExamples: d.validation.length,
      },
      valSplit: opts.validation,
    };
    this.dataset = { file: d.file, template: d.template, train: d.train, validation: d.validation, identity, trl };
    return {
      file: d.file, format: d.format, shape: d.shape, template: d.template, columns: d.columns, stats: d.stats, preview: d.preview,
      problems: d.problems, trainExamples: d.train.length, validationExamples: d.validation.length,
    };
  }

  // ------------------------------------------------------------------------------------ training

  async fitTable(opts: TrainOptions, budget?: number): Promise<ShapeFit[]> {
    const gpu = await this.models.device();
    return shapeFits(fitSettings(checkTrainOptions(opts)), { budget: budget ?? this.memoryBudget, limits: gpu.limits }, this.host.maxPositions);
  }

  async estimate(opts: TrainOptions, budget?: number): Promise<Estimate> {
    return TrainingRun.estimate(this.models, opts, this.dataset?.train ?? [], budget ?? this.memoryBudget);
  }

  async train(opts: TrainOptions, onEvent: (e: TrainEvent) => void): Promise<void> {
    if (this.training) throw new UsageError('A training run is already in progress.', 'Pause or stop it first.');
    checkTrainOptions(opts);
    this.models.requireModel();
    await this.ensureAlive();
    const ds = this.dataset;
    if (!ds) throw new UsageError('No dataset is prepared.', 'Drop a dataset file first.');
    this.dropRuns(); // the new run needs the memory
    this.run = await TrainingRun.start(this.models, opts, ds, { datasetFile: ds.file, template: ds.template, dataset: ds.identity });
    this.chat.adapter = this.run.model;
    await this.checkpoints.clear(); // a new run replaces the old run's checkpoint
    await this.loop(onEvent);
  }

  private async loop(onEvent: (e: TrainEvent) => void): Promise<void> {
    const run = this.run!;
    let ended = false;
    await run.train((e) => {
      // Chat's views died with a lost device; the recovered run is the adapter now.
      if (e.type === 'device-lost') {
        this.chat.reset(true);
        this.opened.clear();
        this.chat.adapter = run.model;
      }
      if (e.type === 'done' || e.type === 'stopped') ended = true;
      return onEvent(e);
    }, this.checkpoints);
    // A finished or stopped run goes into the library at once (a paused one is still the run).
    if (ended && run.step > 0 && this.run === run) {
      const entry = await this.saveRun(run);
      await onEvent({ type: 'saved', id: entry.id, name: entry.name });
    }
  }

  /** The run record of a run on the loaded base (src/export/run-record.ts, as the CLI writes it). */
  private runRecord(run: TrainingRun): RunRecord {
    const base = this.models.requireModel(), src = base.source, o = run.opts;
    const ds = run.setup.dataset;
    const options: Record<string, string | boolean> = {};
    for (const [k, v] of Object.entries(o)) options[k] = typeof v === 'boolean' ? v : Array.isArray(v) ? v.join(',') : String(v);
    return buildRunRecord({
      base: {
        id: src.kind === 'hub' ? src.id.trim() : null,
        revision: src.kind === 'hub' && /^[0-9a-f]{40}$/.test(src.revision ?? '') ? src.revision! : null,
        folder: null, architecture: base.config.arch, dtype: base.config.torchDtype, quant: base.quant, doubleQuant: base.info.form.doubleQuant,
      },
      // A run resumed from a checkpoint older than the dataset identity knows only the file name.
      dataset: ds?.record ?? {
        file: run.setup.datasetFile, bytes: 0, sha256: '', format: 'unknown', shape: 'unknown', template: run.setup.template ?? 'unknown',
        columns: {}, rowsRead: 0, skippedRows: 0, trainExamples: run.data.train.length, validationExamples: run.data.validation.length,
      },
      // Targets as the model names its modules (Phi-3: qkv_proj, gate_up_proj), as PEFT needs them.
      lora: { ...loraSpec(o), targets: selectModules(base.config, o.targets) }, train: trainConfig(o, run.setup.shuffle ?? true), seqLen: o.seqLen, packing: o.packing ?? false,
      completionOnlyLoss: DEFAULT_TOKENIZE.completionOnlyLoss, assistantOnlyLoss: DEFAULT_TOKENIZE.assistantOnlyLoss,
      valSplit: ds?.valSplit ?? 0, checkpointing: o.checkpointing, options, totalSteps: run.totalSteps, history: run.logs,
    });
  }

  private async saveRun(run: TrainingRun): Promise<LibraryEntry> {
    const base = this.models.requireModel();
    const files = await exportPeft(run.model.lora!, this.baseName());
    const record = this.runRecord(run);
    const entry = await this.library.add({
      modelKey: modelOfKey(base.key), name: defaultName(record, new Date(record.created)), origin: 'trained',
      rank: run.model.lora!.spec.rank, targets: [...run.model.lora!.spec.targets], record, files,
    });
    this.currentId = entry.id;
    return entry;
  }

  private baseName(): string {
    const base = this.models.requireModel();
    return base.source.kind === 'hub' ? base.source.id : base.name;
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
        await this.loadModelNow({ kind: 'cached', key }, modelOfKey(key).endsWith(':none') ? 'none' : 'nf4');
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
    this.models.requireModel();
    await this.ensureAlive();
    const lora = this.adapter?.lora;
    if (!lora) throw new UsageError('There is no adapter to export.', 'Train or import an adapter first.');
    return exportPeft(lora, this.baseName());
  }

  async importAdapter(files: File[]): Promise<ImportedInfo> {
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
    const recordFile = byName.get(RUN_RECORD_FILE);
    let record: RunRecord | null = null;
    if (recordFile) {
      let json: unknown;
      try {
        json = JSON.parse(await recordFile.text());
      } catch (e) {
        throw new AdapterFileError(`${RUN_RECORD_FILE}: ${(e as Error).message}.`, 'Drop the adapter without it, or the file as webtune wrote it.', { file: RUN_RECORD_FILE });
      }
      record = parseRunRecord(json);
      if (record.base.architecture !== base.config.arch) {
        throw new AdapterFileError(`${RUN_RECORD_FILE}: the adapter was trained on a ${record.base.architecture} model${record.base.id ? ` (${record.base.id})` : ''}; the loaded model is ${base.config.arch}.`,
          'Load the base model it was trained on, then import it.', { file: RUN_RECORD_FILE, field: 'base.architecture' });
      }
    }
    const a = await importPeft(base.config, blobSource(cfg, cfg.name), blobSource(weights, weights.name));
    const bytes = {
      [ADAPTER_CONFIG_FILE]: new Uint8Array(await cfg.arrayBuffer()),
      [ADAPTER_WEIGHTS_FILE]: new Uint8Array(await weights.arrayBuffer()),
    };
    const entry = await this.library.add({
      modelKey: modelOfKey(base.key), name: defaultName(record, new Date()), origin: 'imported', rank: a.spec.rank, targets: [...a.spec.targets], record, files: bytes,
    });
    this.dropRuns();
    // Batch 1, one position: generation makes its own KV-cache view over it.
    this.imported = await this.models.openAdapter(a);
    this.chat.adapter = this.imported;
    this.currentId = entry.id;
    return { rank: a.spec.rank, targets: a.spec.targets, id: entry.id, name: entry.name };
  }

  // ------------------------------------------------------------------------------------ library

  async listAdapters(): Promise<LibraryList> {
    const base = this.models.base;
    return { entries: base ? await this.library.list(modelOfKey(base.key)) : [], current: this.currentId ?? null };
  }

  async renameAdapter(id: string, name: string): Promise<LibraryEntry> {
    return this.library.rename(id, name);
  }

  async deleteAdapter(id: string): Promise<void> {
    await this.library.remove(id);
    this.closeOpened(id);
    // The trained run or imported adapter stays chat's current one; it just has no entry now.
    if (this.currentId === id) this.currentId = undefined;
  }

  private closeOpened(id: string): void {
    const m = this.opened.get(id);
    if (!m) return;
    this.opened.delete(id);
    this.chat.release(m);
    this.models.close(m);
  }

  /** The library entry's PEFT files checked against the loaded base (shapes, targets, finiteness). */
  private async entryAdapter(id: string): Promise<{ entry: LibraryEntry; files: Record<string, Uint8Array>; adapter: ImportedAdapter }> {
    const base = this.models.requireModel();
    const entry = await this.library.get(id);
    if (modelOfKey(entry.modelKey) !== modelOfKey(base.key)) {
      throw new AdapterFileError(`The adapter "${entry.name}" belongs to model ${entry.modelKey}; the loaded model is ${base.key}.`,
        'Load the model it was made for first.', { id, modelKey: entry.modelKey });
    }
    const files = await this.library.files(id);
    const src = (name: string) => bytesSource(`${entry.name}/${name}`, files[name] ?? new Uint8Array());
    return { entry, files, adapter: await importPeft(base.config, src(ADAPTER_CONFIG_FILE), src(ADAPTER_WEIGHTS_FILE)) };
  }

  /** Which adapter chat answers with when asked for one: a library entry (opened over the loaded
   *  base next to the others; the base weights stay where they are), or null for the current one
   *  (the trained run or the imported adapter). Generating with `adapter: false` is the base. */
  async useAdapter(id: string | null): Promise<void> {
    this.models.requireModel();
    this.busy('switching adapters');
    await this.ensureAlive();
    if (id === null || id === this.currentId) {
      this.chat.adapter = this.adapter;
      return;
    }
    let m = this.opened.get(id);
    if (m) this.opened.delete(id); // re-inserted below as the most recently used
    else m = await this.models.openAdapter((await this.entryAdapter(id)).adapter);
    this.opened.set(id, m);
    for (const old of [...this.opened.keys()].slice(0, Math.max(0, this.opened.size - MAX_OPENED))) this.closeOpened(old);
    this.chat.adapter = m;
  }

  /** Where the loaded base's original weights can be read again: a cached base's key names its
   *  source (cacheKey: demo:QUANT, hub:ID@REVISION:QUANT). */
  private originalSource(): StoreSource {
    const src = this.models.requireModel().source;
    if (src.kind !== 'cached') return src;
    if (src.key.startsWith('demo:')) return { kind: 'demo' };
    const hub = /^hub:(.+)@([^@:]+):(nf4|none)$/.exec(src.key);
    if (hub) return { kind: 'hub', id: hub[1], revision: hub[2] };
    throw new UsageError('The browser keeps only the quantized weights of a model loaded from a folder; merging needs the original ones.',
      'Load the model folder again (drop it on the model panel), then export the merged model.', { key: src.key });
  }

  async exportMerged(id: string, onFile: (e: MergedFileEvent) => Promise<void> | void): Promise<{ files: string[]; merged: number }> {
    this.busy('merging');
    const base = this.models.requireModel();
    const { entry, files } = await this.entryAdapter(id);
    const src = (name: string) => bytesSource(`${entry.name}/${name}`, files[name]);
    const adapter = await readAdapter(base.config, src(ADAPTER_CONFIG_FILE), src(ADAPTER_WEIGHTS_FILE));
    const original = await this.models.read(this.originalSource(), base.quant);
    const write = async (name: string, bytes: Uint8Array) => {
      await onFile({ type: 'open', name });
      await onFile({ type: 'write', name, chunk: bytes });
      await onFile({ type: 'close', name });
    };
    const r = await writeMergedWeights(original.folder, original.config, adapter, async (name) => {
      await onFile({ type: 'open', name });
      return { write: async (chunk) => onFile({ type: 'write', name, chunk }), close: async () => onFile({ type: 'close', name }) };
    }, { onTensor: (tensor, done, total) => void onFile({ type: 'progress', tensor, done, total }) });
    // The config and the tokenizer files as the source has them.
    const side = Object.entries(original.texts).map(([name, text]) => [name, new TextEncoder().encode(text)] as const);
    for (const [name, bytes] of side) await write(name, bytes);
    return { files: [...r.files, ...side.map(([n]) => n)], merged: r.merged.length };
  }

  async exportLibraryAdapter(id: string, format: AdapterExportFormat): Promise<Record<string, Uint8Array>> {
    if (format === 'peft') {
      const entry = await this.library.get(id);
      const files = await this.library.files(id);
      return entry.record ? { ...files, [RUN_RECORD_FILE]: new TextEncoder().encode(runRecordJson(entry.record)) } : { ...files };
    }
    if (format === 'trl') {
      const entry = await this.library.get(id), r = entry.record, ds = this.dataset;
      if (!r) throw new UsageError(`The adapter "${entry.name}" has no run record: the TRL project is built from one.`, 'Export the TRL project of an adapter trained here, or imported with its webtune-run.json.', { id });
      if (!ds || ds.identity.record.sha256 !== r.dataset.sha256 || ds.trl.train.length !== r.dataset.trainExamples || ds.trl.validation.length !== r.dataset.validationExamples) {
        throw new UsageError(`The TRL project needs the rows the run trained on: ${r.dataset.file} (SHA-256 ${r.dataset.sha256.slice(0, 12)}…, ${r.dataset.trainExamples} training and ${r.dataset.validationExamples} validation examples) is not the prepared dataset.`,
          'Drop that file on the dataset panel with the settings of the run, then export again.', { id, field: 'dataset' });
      }
      return { [`${fileStem(entry.name)}-trl.zip`]: zipStore(trlProjectFiles(r, ds.trl)) };
    }
    // GGUF names tensors by llama.cpp's layout of the base, so the base must be the loaded model.
    const base = this.models.requireModel();
    const { entry, files } = await this.entryAdapter(id);
    const src = (name: string) => bytesSource(`${entry.name}/${name}`, files[name]);
    const a = await readAdapter(base.config, src(ADAPTER_CONFIG_FILE), src(ADAPTER_WEIGHTS_FILE));
    return { [`${fileStem(entry.name)}.gguf`]: adapterToGguf(base.config, a.config, a.specs, a.weights, { name: entry.name }) };
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

