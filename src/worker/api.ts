// The contract between the page and the engine worker. The worker owns the GPU device, the model,
// the dataset and the training loop; the page holds only what these types carry. Callbacks are
// comlink proxies (comlink.proxy(fn)) so progress streams while a call is pending. Every failure is
// a typed WebtuneError rebuilt on the page side (errors-transfer.ts).
import type { Capabilities, SelfTestResult } from '../gpu/selftest.ts';
import type { DataStats, Preview } from '../data/stats.ts';
import type { Problem } from '../data/types.ts';
import type { ShapeName } from '../data/shape.ts';
import type { TemplateName } from '../data/templates.ts';
import type { StepLog } from '../train/trainer.ts';
import type { Proj } from '../model/lora.ts';
import type { Schedule } from '../train/schedule.ts';

/** Where a base model comes from. */
export type ModelSource =
  | { kind: 'demo' } // public/models/demo, shipped with the site
  | { kind: 'hub'; id: string; revision?: string; token?: string } // Hugging Face, with an optional access token
  | { kind: 'files'; files: File[] } // a folder the user dropped or picked
  | { kind: 'cached'; key: string }; // a model already quantized into IndexedDB

export type LoadEvent =
  | { phase: 'download'; file: string; loaded: number; total: number; bytesPerSecond: number }
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
  quant: 'nf4' | 'none';
  hasChatTemplate: boolean;
  /** True when every weight came from IndexedDB (no network, no quantization). */
  fromCache: boolean;
}

export interface CachedModel {
  key: string;
  name: string;
  revision: string | null;
  bytes: number;
  savedAt: number;
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

export interface TrainOptions {
  rank: number;
  alpha: number;
  dropout: number;
  rslora: boolean;
  targets: Proj[];
  lr: number;
  epochs: number;
  maxSteps?: number;
  batch: number;
  gradAccum: number;
  seqLen: number;
  schedule: Schedule;
  warmupSteps: number;
  weightDecay: number;
  maxGradNorm: number;
  seed: number;
  checkpointing: boolean;
  /** Save a checkpoint to IndexedDB every this many optimizer steps (and at pause). */
  checkpointEvery: number;
}

export interface Estimate {
  /** GPU bytes by category, from the memory plan. */
  bytes: Record<string, number>;
  peakBytes: number;
  /** Whether the plan fits the device's limits. */
  fits: boolean;
  totalSteps: number;
}

export type TrainEvent =
  | { type: 'step'; log: StepLog; totalSteps: number; gpuBytes: Record<string, number> }
  | { type: 'checkpoint'; step: number }
  | { type: 'paused'; step: number }
  | { type: 'device-lost'; resumedFromStep: number }
  | { type: 'done'; step: number }
  | { type: 'stopped'; step: number };

export interface CheckpointInfo {
  modelKey: string;
  step: number;
  totalSteps: number;
  savedAt: number;
  options: TrainOptions;
  datasetFile: string;
  /** The template the run's examples were rendered with: after a reload the chat frames prompts the
   *  same way. Absent in checkpoints saved before it was recorded. */
  template?: TemplateName;
}

export interface GenerateOptions {
  /** Apply the trained adapter (false = the base model). */
  adapter: boolean;
  chat: boolean;
  maxNewTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  seed: number;
}

export interface EngineApi {
  capabilities(): Promise<Capabilities>;
  selfTest(): Promise<SelfTestResult>;
  storage(): Promise<StorageInfo>;
  requestPersistence(): Promise<boolean>;
  listCachedModels(): Promise<CachedModel[]>;
  deleteCachedModel(key: string): Promise<void>;
  loadModel(source: ModelSource, quant: 'nf4' | 'none', onEvent: (e: LoadEvent) => void): Promise<ModelInfo>;
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
  /** Test hook: destroy the GPU device as a driver reset would (e2e: resume after device loss). */
  simulateDeviceLoss(): Promise<void>;
}
