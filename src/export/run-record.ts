// The run record (`webtune-run.json`): what a training run was, in one JSON file kept beside the
// adapter, in the spirit of Transformers' trainer_state.json plus training_args.json. It names the
// base model (hub id and revision, or the folder), the dataset (file name, size, SHA-256, shape,
// template), every effective setting, the raw options as given, the loss history and the final
// losses. The TRL export (src/export/trl.ts) rebuilds the run from it, the model card quotes it.
// Host-neutral: the CLI and the site both build it; hashing and file access stay with the caller.
import { AdapterFileError } from '../errors.ts';
import type { LoraSpec } from '../model/lora.ts';
import type { TrainConfig } from '../train/config.ts';

export const RUN_RECORD_FILE = 'webtune-run.json';
export const RUN_RECORD_FORMAT = 'webtune-run';
export const RUN_RECORD_VERSION = 1;

export interface RunBase {
  /** Hugging Face repo id (owner/name) when known: from the hub cache path or config `_name_or_path`. */
  id: string | null;
  /** Commit of the hub snapshot, when known. */
  revision: string | null;
  /** The local folder it was read from (CLI), or null (site, hub download). */
  folder: string | null;
  /** config.json model_type (llama, mistral, qwen2). */
  architecture: string;
  /** config.json torch_dtype, as written. */
  dtype: string | null;
  quant: 'nf4' | 'none';
  doubleQuant: boolean;
}

export interface RunDataset {
  file: string;
  bytes: number;
  sha256: string;
  format: string;
  shape: string;
  template: string;
  /** Logical field -> the file's column. */
  columns: Record<string, string>;
  rowsRead: number;
  skippedRows: number;
  trainExamples: number;
  validationExamples: number;
}

export interface RunSettings {
  lora: { r: number; alpha: number; dropout: number; rslora: boolean; targets: string[] };
  train: {
    lr: number; epochs: number; maxSteps: number | null; batch: number; gradAccum: number; schedule: string;
    warmupSteps: number; weightDecay: number; maxGradNorm: number; seed: number; shuffle: boolean;
  };
  seqLen: number;
  packing: boolean;
  completionOnlyLoss: boolean;
  assistantOnlyLoss: boolean;
  /** The validation split as given (fraction or count; 0 = none). */
  valSplit: number;
  checkpointing: boolean;
  /** Folder of the adapter training started from, if any. */
  initAdapter: string | null;
}

export interface RunStep {
  step: number;
  epoch: number;
  loss: number;
  lr: number;
  grad_norm: number;
  tokens: number;
  val_loss?: number;
}

export interface RunRecord {
  format: typeof RUN_RECORD_FORMAT;
  version: typeof RUN_RECORD_VERSION;
  /** ISO 8601 time the run finished. */
  created: string;
  base: RunBase;
  dataset: RunDataset;
  settings: RunSettings;
  /** The options exactly as given on the command line or in the form (unparsed). */
  options: Record<string, string | boolean>;
  totalSteps: number;
  history: RunStep[];
  final: { step: number; loss: number | null; valLoss: number | null };
}

export interface RunRecordInput {
  base: RunBase;
  dataset: RunDataset;
  lora: LoraSpec;
  train: TrainConfig;
  seqLen: number;
  packing?: boolean;
  completionOnlyLoss: boolean;
  assistantOnlyLoss: boolean;
  valSplit: number;
  checkpointing: boolean;
  initAdapter?: string | null;
  options: Record<string, string | boolean | undefined>;
  totalSteps: number;
  history: readonly RunStep[];
  created?: Date;
}

export function buildRunRecord(i: RunRecordInput): RunRecord {
  const history = i.history.map((s) => ({
    step: s.step, epoch: s.epoch, loss: s.loss, lr: s.lr, grad_norm: s.grad_norm, tokens: s.tokens,
    ...(s.val_loss !== undefined ? { val_loss: s.val_loss } : {}),
  }));
  const last = history.at(-1);
  const lastVal = [...history].reverse().find((s) => s.val_loss !== undefined);
  const options: Record<string, string | boolean> = {};
  for (const [k, v] of Object.entries(i.options)) if (v !== undefined) options[k] = v;
  const t = i.train;
  return {
    format: RUN_RECORD_FORMAT,
    version: RUN_RECORD_VERSION,
    created: (i.created ?? new Date()).toISOString(),
    base: { ...i.base },
    dataset: { ...i.dataset, columns: { ...i.dataset.columns } },
    settings: {
      lora: { r: i.lora.rank, alpha: i.lora.alpha, dropout: i.lora.dropout, rslora: i.lora.rslora, targets: [...i.lora.targets] },
      train: {
        lr: t.lr, epochs: t.epochs, maxSteps: t.maxSteps ?? null, batch: t.batch, gradAccum: t.gradAccum, schedule: t.schedule,
        warmupSteps: t.warmupSteps, weightDecay: t.weightDecay, maxGradNorm: t.maxGradNorm, seed: t.seed, shuffle: t.shuffle,
      },
      seqLen: i.seqLen,
      packing: i.packing ?? false,
      completionOnlyLoss: i.completionOnlyLoss,
      assistantOnlyLoss: i.assistantOnlyLoss,
      valSplit: i.valSplit,
      checkpointing: i.checkpointing,
      initAdapter: i.initAdapter ?? null,
    },
    options,
    totalSteps: i.totalSteps,
    history,
    final: { step: last?.step ?? 0, loss: last?.loss ?? null, valLoss: lastVal?.val_loss ?? null },
  };
}

/** The record as written: two-space JSON and a final newline (diffable, like trainer_state.json). */
export function runRecordJson(r: RunRecord): string {
  return JSON.stringify(r, null, 2) + '\n';
}

/** Parses and checks a webtune-run.json (only the fields the exports rely on are checked deeply). */
export function parseRunRecord(json: unknown, file = RUN_RECORD_FILE): RunRecord {
  const bad = (what: string, field: string) =>
    new AdapterFileError(`${file}: ${what}.`, `This is not a run record written by webtune train; train again with --out to get one.`, { file, field });
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw bad('not a JSON object', 'format');
  const r = json as Partial<RunRecord>;
  if (r.format !== RUN_RECORD_FORMAT) throw bad(`"format" is ${JSON.stringify(r.format ?? null)}, expected "${RUN_RECORD_FORMAT}"`, 'format');
  if (r.version !== RUN_RECORD_VERSION) throw bad(`version ${JSON.stringify(r.version ?? null)} is not supported (this webtune reads version ${RUN_RECORD_VERSION})`, 'version');
  const s = r.settings;
  if (!s || typeof s !== 'object' || !s.lora || !s.train) throw bad('"settings" is missing', 'settings');
  const nums: [string, unknown][] = [
    ['settings.lora.r', s.lora.r], ['settings.lora.alpha', s.lora.alpha], ['settings.lora.dropout', s.lora.dropout],
    ['settings.train.lr', s.train.lr], ['settings.train.epochs', s.train.epochs], ['settings.train.batch', s.train.batch],
    ['settings.train.gradAccum', s.train.gradAccum], ['settings.train.warmupSteps', s.train.warmupSteps],
    ['settings.train.weightDecay', s.train.weightDecay], ['settings.train.maxGradNorm', s.train.maxGradNorm],
    ['settings.train.seed', s.train.seed], ['settings.seqLen', s.seqLen],
  ];
  for (const [k, v] of nums) if (typeof v !== 'number' || !Number.isFinite(v)) throw bad(`"${k}" must be a number, got ${JSON.stringify(v ?? null)}`, k);
  if (!Array.isArray(s.lora.targets) || !s.lora.targets.every((x) => typeof x === 'string')) throw bad('"settings.lora.targets" must be a list of module names', 'settings.lora.targets');
  if (!r.base || typeof r.base.architecture !== 'string') throw bad('"base" is missing', 'base');
  if (!r.dataset || typeof r.dataset.file !== 'string') throw bad('"dataset" is missing', 'dataset');
  if (!Array.isArray(r.history)) throw bad('"history" must be a list', 'history');
  return r as RunRecord;
}

/** Hub id and revision from a Hugging Face cache path (`.../models--owner--name/snapshots/<sha>`),
 *  else the config's `_name_or_path` when it looks like a repo id. */
export function baseIdentity(folder: string | null, config: Record<string, unknown>): { id: string | null; revision: string | null } {
  const m = folder?.replace(/\\/g, '/').match(/models--([^/]+?)--([^/]+)\/snapshots\/([0-9a-f]{40})\/?$/);
  if (m) return { id: `${m[1]}/${m[2]}`, revision: m[3] };
  const n = config._name_or_path;
  if (typeof n === 'string' && /^[\w.-]+\/[\w.-]+$/.test(n)) return { id: n, revision: null };
  return { id: null, revision: null };
}
