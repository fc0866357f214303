// The contract between the page and the engine worker. The worker owns the GPU device, the model,
// the dataset and the training loop; the page holds only what these types carry. Callbacks are
// comlink proxies (comlink.proxy(fn)) so progress streams while a call is pending. Every failure is
// a typed WebtuneError rebuilt on the page side (errors-transfer.ts).
import type { Capabilities, SelfTestResult } from '../app/selftest.ts';
import type { DataStats, Preview } from '../data/stats.ts';
import type { Problem } from '../data/types.ts';
import type { ShapeName } from '../data/shape.ts';
import type { TemplateName } from '../data/templates.ts';
import type { Proj } from '../model/lora.ts';
import type { TrainOptions } from '../app/options.ts';
import type { CachedModel, LoadEvent, ModelInfo, ModelSource } from '../app/model-store.ts';
import type { CheckpointInfo, Estimate, TrainEvent } from '../app/training-run.ts';
import type { GenerateOptions } from '../app/chat.ts';

// The types the calls carry are the application layer's own (src/app/), named here for the page.
export type { CachedModel, CheckpointInfo, Estimate, GenerateOptions, LoadEvent, ModelInfo, ModelSource, TrainEvent, TrainOptions };

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

export interface EngineApi {
  capabilities(): Promise<Capabilities>;
  selfTest(): Promise<SelfTestResult>;
  storage(): Promise<StorageInfo>;
  requestPersistence(): Promise<boolean>;
  listCachedModels(): Promise<CachedModel[]>;
  deleteCachedModel(key: string): Promise<void>;
  loadModel(source: ModelSource, quant: 'nf4' | 'none', onEvent: (e: LoadEvent) => void): Promise<ModelInfo>;
  /** Cancels the model load in progress: every download request is aborted, nothing partial is cached. */
  cancelLoad(): Promise<void>;
  prepareDataset(file: File, opts: DataOptions): Promise<DatasetSummary>;
  estimate(opts: TrainOptions): Promise<Estimate>;
  train(opts: TrainOptions, onEvent: (e: TrainEvent) => void): Promise<void>;
  pause(): Promise<void>;
  stop(): Promise<void>;
  /** A checkpoint left by an earlier session (after a reload), if any. */
  pendingCheckpoint(): Promise<CheckpointInfo | null>;
  resumeTraining(onEvent: (e: TrainEvent) => void): Promise<void>;
  generate(prompt: string, opts: GenerateOptions, onText: (piece: string) => void): Promise<string>;
  stopGeneration(): Promise<void>;
  exportAdapter(): Promise<Record<string, Uint8Array>>;
  importAdapter(files: File[]): Promise<{ rank: number; targets: Proj[] }>;
  metricsCsv(): Promise<string>;
}
