// The contract between the page and the engine worker. The worker owns the GPU device, the model,
// the dataset and the training loop; the page holds only what these types carry. Callbacks are
// comlink proxies (comlink.proxy(fn)) so progress streams while a call is pending. Every failure is
// a typed WebtuneError rebuilt on the page side (errors-transfer.ts).
import type { Capabilities, SelfTestResult } from '../app/selftest.ts';
import type { DataStats, Preview } from '../data/stats.ts';
import type { Problem } from '../data/types.ts';
import type { ShapeName } from '../data/shape.ts';
import type { TemplateName } from '../data/templates.ts';
import type { LoraModule } from '../model/lora.ts';
import type { TrainOptions } from '../app/options.ts';
import type { CachedModel, LoadEvent, ModelInfo, ModelSource, WeightForm } from '../app/model-store.ts';
import type { CheckpointInfo, Estimate, TrainEvent } from '../app/training-run.ts';
import type { ShapeFit } from '../app/fit.ts';
import type { GenerateOptions } from '../app/chat.ts';
import type { LibraryEntry } from '../app/adapter-library.ts';
import type { RunRecord } from '../export/run-record.ts';

// The types the calls carry are the application layer's own (src/app/), named here for the page.
export type { ShapeFit };
export type { CachedModel, WeightForm, CheckpointInfo, Estimate, GenerateOptions, LibraryEntry, LoadEvent, ModelInfo, ModelSource, RunRecord, TrainEvent, TrainOptions };

/** The loaded base model's adapters, and which one is chat's current adapter (null: none saved). */
export interface LibraryList {
  entries: LibraryEntry[];
  current: string | null;
}

/** PEFT: adapter_config.json, adapter_model.safetensors and webtune-run.json; GGUF: one LoRA file
 *  for llama.cpp's --lora; TRL: the project that reruns the training on transformers + PEFT + TRL,
 *  as one ZIP (needs the run's dataset prepared in this session). */
export type AdapterExportFormat = 'peft' | 'gguf' | 'trl';

/** The merged model folder, streamed file by file to the page, which writes it (to a folder the user
 *  picked, or as downloads). Each call is awaited: the worker reads the next tensor only after the
 *  page took the last chunk, so at most one tensor is in memory on either side. */
export type MergedFileEvent =
  | { type: 'open'; name: string }
  | { type: 'write'; name: string; chunk: Uint8Array }
  | { type: 'close'; name: string }
  | { type: 'progress'; tensor: string; done: number; total: number };

export interface ImportedInfo {
  rank: number;
  targets: LoraModule[];
  /** Its library entry. */
  id: string;
  name: string;
}

export interface StorageInfo {
  usage: number;
  quota: number;
  persisted: boolean;
}

export interface DataOptions {
  template?: TemplateName;
  shape?: ShapeName;
  seqLen: number;
  validation: number;
  skipBadRows: boolean;
  seed: number;
}

export interface DatasetSummary {
  file: string;
  format: string;
  shape: ShapeName;
  template: TemplateName;
  columns: Record<string, string>;
  stats: DataStats;
  preview: Preview[];
  problems: Problem[];
  trainExamples: number;
  validationExamples: number;
}

export interface LoadFit {
  options: TrainOptions;
  budget?: number;
}

export interface EngineApi {
  capabilities(): Promise<Capabilities>;
  selfTest(): Promise<SelfTestResult>;
  storage(): Promise<StorageInfo>;
  requestPersistence(): Promise<boolean>;
  listCachedModels(): Promise<CachedModel[]>;
  deleteCachedModel(key: string): Promise<void>;
  /** With `fit`, the model is refused before any weight is downloaded when a training run with these
   *  options does not fit the device: a ModelTooLargeError with the plan by category and the
   *  nearest settings that fit. `budget` defaults to the host's memory budget. `form`: the weight form
   *  to load (and cache) the model in; absent fields follow `fit`'s options (f32 tables without
   *  double quantization without them). A cached source is loaded in the form its entry holds, and a
   *  `form` that differs from it is refused (UsageError). */
  loadModel(source: ModelSource, quant: 'nf4' | 'none', onEvent: (e: LoadEvent) => void, fit?: LoadFit, form?: Partial<WeightForm>): Promise<ModelInfo>;
  /** Cancels the model load in progress: every download request is aborted, nothing partial is cached. */
  cancelLoad(): Promise<void>;
  prepareDataset(file: File, opts: DataOptions): Promise<DatasetSummary>;
  /** The fit meter: a training run with `opts` planned for each named model shape on this device
   *  against `budget` (default: the host's memory budget). */
  fitTable(opts: TrainOptions, budget?: number): Promise<ShapeFit[]>;
  /** The run's memory plan and steps; `budget` (GPU bytes) defaults to the host's memory budget. */
  estimate(opts: TrainOptions, budget?: number): Promise<Estimate>;
  train(opts: TrainOptions, onEvent: (e: TrainEvent) => void): Promise<void>;
  pause(): Promise<void>;
  stop(): Promise<void>;
  /** A checkpoint left by an earlier session (after a reload), if any. */
  pendingCheckpoint(): Promise<CheckpointInfo | null>;
  resumeTraining(onEvent: (e: TrainEvent) => void): Promise<void>;
  generate(prompt: string, opts: GenerateOptions, onText: (piece: string) => void): Promise<string>;
  stopGeneration(): Promise<void>;
  exportAdapter(): Promise<Record<string, Uint8Array>>;
  /** PEFT files (and webtune-run.json if given) checked against the base, saved in the library, and
   *  made chat's current adapter. */
  importAdapter(files: File[]): Promise<ImportedInfo>;
  /** The adapter library of the loaded base model. */
  listAdapters(): Promise<LibraryList>;
  renameAdapter(id: string, name: string): Promise<LibraryEntry>;
  deleteAdapter(id: string): Promise<void>;
  exportLibraryAdapter(id: string, format: AdapterExportFormat): Promise<Record<string, Uint8Array>>;
  /** The loaded base (its original weights re-read from its source) with the entry merged in, as a
   *  Hugging Face model folder (export/merge.ts). */
  exportMerged(id: string, onFile: (e: MergedFileEvent) => Promise<void> | void): Promise<{ files: string[]; merged: number }>;
  /** The adapter generate() applies with `adapter: true`: a library entry, or null for the current one. */
  useAdapter(id: string | null): Promise<void>;
  metricsCsv(): Promise<string>;
}
