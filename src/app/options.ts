// The training and LoRA options, once: their type, the seed's defaults, what each field accepts, its
// label and help for the form, its flag for the CLI, one validator, and the values derived from them
// (effective batch, optimizer steps). The CLI (`webtune train`), the worker (Engine.train/estimate)
// and the training form all read this module, so a value the form refuses is refused by the CLI too,
// with the same words, before any GPU work starts.
//
// Plain TypeScript rather than a schema library: the table below is small, and the defaults stay
// where the layers that use them define them (LoRA's in model/lora.ts, the optimizer's in
// train/config.ts); this module only points at them.
import { UsageError } from '../errors.ts';
import { ALL_MODULE_NAMES, LINEAR_MODULES } from '../io/hf-names.ts';
import { DEFAULT_LORA, parseTargets, type LoraModule } from '../model/lora.ts';
import { DEFAULT_TRAIN, planSteps, type StepPlan } from '../train/config.ts';
import { SCHEDULES, parseSchedule, type Schedule } from '../train/schedule.ts';

/** Element storage of the embedding, an untied head, saved activations and LoRA intermediates (f16
 *  pairs, f32 arithmetic), or 'f32', the exact path. LoRA weights, gradients and Adam state are f32
 *  either way. */
export const STORAGES = ['f16', 'f32'] as const;
export type Storage = (typeof STORAGES)[number];

/** 4 GiB: what an integrated GPU or a mid-range card can give one tab without trouble (the site's
 *  memory budget until the user sets their own; src/app/fit.ts). */
export const DEFAULT_MEMORY_BUDGET = 4 * 1024 ** 3;

export interface TrainOptions {
  rank: number;
  alpha: number;
  dropout: number;
  rslora: boolean;
  targets: LoraModule[];
  lr: number;
  epochs: number;
  /** Stop after this many optimizer steps (overrides epochs, as in Transformers); absent or 0 = no limit. */
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
  /** Save a checkpoint every this many optimizer steps (and at pause). */
  checkpointEvery: number;
  /** Absent in runs saved before the option existed: those trained in f32. */
  storage?: Storage;
  /** bitsandbytes double quantization of the NF4 absmax (8-bit codes, one f32 scale per 256 blocks).
   *  It is how the base is loaded, so the site loads (and caches) the model in this form. Absent in
   *  runs saved before the option existed: off. */
  doubleQuant?: boolean;
  /** Pack several examples into each row of seqLen tokens (TRL's packing, padding-free: attention
   *  stays within each example). Absent in runs saved before the option existed: not packed. */
  packing?: boolean;
}

export type OptionKey = keyof TrainOptions;

export interface OptionField {
  /** The form's label. */
  label: string;
  /** One line of help: the form's tooltip and the CLI's --help. */
  help: string;
  kind: 'int' | 'number' | 'boolean' | 'schedule' | 'targets' | 'storage';
  /** Which part of the form shows it (seqLen belongs to the dataset panel). */
  group: 'lora' | 'optimization' | 'data';
  min?: number;
  max?: number;
  /** The bound itself is refused (alpha > 0, dropout < 1). */
  minOpen?: boolean;
  maxOpen?: boolean;
  /** The form's input step. */
  step?: number | 'any';
  /** What a valid value is, in words: "must be ...". */
  want: string;
}

/** Every option, in the order the form shows them. */
export const OPTION_FIELDS: { readonly [K in OptionKey]-?: OptionField } = {
  rank: { label: 'Rank (r)', help: 'LoRA rank: the inner size of B·A.', kind: 'int', group: 'lora', min: 1, step: 1, want: 'a whole number of at least 1 (8 to 32 is usual)' },
  alpha: { label: 'Alpha', help: 'LoRA alpha: the update is scaled by alpha/r (alpha/√r with rsLoRA).', kind: 'number', group: 'lora', min: 0, minOpen: true, step: 'any', want: 'above 0 (often 2 to 4 times the rank)' },
  dropout: { label: 'Dropout', help: 'Dropout on the LoRA input while training.', kind: 'number', group: 'lora', min: 0, max: 1, maxOpen: true, step: 0.01, want: 'at least 0 and below 1' },
  rslora: { label: 'rsLoRA (scale alpha/√r)', help: 'Rank-stabilised scaling (PEFT use_rslora).', kind: 'boolean', group: 'lora', want: 'true or false' },
  targets: { label: 'Target layers', help: `Projections to adapt: a comma-separated subset of ${LINEAR_MODULES.join(', ')}, or all-linear (on Phi-3, q_proj, k_proj and v_proj select its fused qkv_proj, gate_proj and up_proj its gate_up_proj).`, kind: 'targets', group: 'lora', want: 'at least one layer to adapt' },
  lr: { label: 'Learning rate', help: 'AdamW peak learning rate.', kind: 'number', group: 'optimization', min: 0, max: 1, minOpen: true, maxOpen: true, step: 'any', want: 'above 0 and below 1 (1e-4 to 3e-4 is usual for LoRA)' },
  epochs: { label: 'Epochs', help: 'Passes over the training split.', kind: 'int', group: 'optimization', min: 1, step: 1, want: 'a whole number of at least 1' },
  maxSteps: { label: 'Max steps (0 = all epochs)', help: 'Stop after this many optimizer steps (0 = no limit).', kind: 'int', group: 'optimization', min: 0, step: 1, want: 'a whole number (0 = no limit)' },
  batch: { label: 'Batch size', help: 'Examples per micro-batch.', kind: 'int', group: 'optimization', min: 1, step: 1, want: 'a whole number of at least 1' },
  gradAccum: { label: 'Gradient accumulation', help: 'Micro-batches per optimizer step.', kind: 'int', group: 'optimization', min: 1, step: 1, want: 'a whole number of at least 1' },
  seqLen: { label: 'Sequence length', help: 'Longest example in tokens; longer ones are cut.', kind: 'int', group: 'data', min: 2, step: 1, want: 'a whole number of at least 2' },
  schedule: { label: 'Schedule', help: `Learning-rate schedule: ${SCHEDULES.join(', ')}.`, kind: 'schedule', group: 'optimization', want: `one of ${SCHEDULES.join(', ')}` },
  warmupSteps: { label: 'Warm-up steps', help: 'Steps of linear warm-up before the schedule.', kind: 'int', group: 'optimization', min: 0, step: 1, want: 'a whole number (0 = none)' },
  weightDecay: { label: 'Weight decay', help: 'AdamW decoupled weight decay.', kind: 'number', group: 'optimization', min: 0, step: 'any', want: '0 or more' },
  maxGradNorm: { label: 'Max gradient norm (0 = off)', help: 'Clip the global gradient norm to this (0 = no clipping).', kind: 'number', group: 'optimization', min: 0, step: 'any', want: '0 (no clipping) or more' },
  seed: { label: 'Seed', help: 'Seeds the LoRA init, the shuffle and dropout.', kind: 'int', group: 'optimization', step: 1, want: 'a whole number' },
  checkpointEvery: { label: 'Checkpoint every (steps)', help: 'Save a resumable checkpoint every this many steps (the site).', kind: 'int', group: 'optimization', min: 1, step: 1, want: 'a whole number of steps, at least 1' },
  checkpointing: { label: 'Activation checkpointing (less memory, slower)', help: 'Recompute activations in backward instead of keeping them.', kind: 'boolean', group: 'optimization', want: 'true or false' },
  packing: { label: 'Pack short examples into each row', help: 'Fill each row of the sequence length with several examples, each attending only to itself (TRL packing, padding-free): more trained tokens per step on short examples.', kind: 'boolean', group: 'optimization', want: 'true or false' },
  storage: { label: 'Storage precision', help: 'f16 keeps the embedding, the head and saved activations in half the memory (arithmetic stays f32); f32 is the exact path. The model is loaded (and cached) with its embedding and head in this precision.', kind: 'storage', group: 'optimization', want: `one of ${STORAGES.join(', ')}` },
  doubleQuant: { label: 'Double quantization (NF4 scales as 8-bit codes)', help: 'bitsandbytes double quantization: the NF4 absmax kept as 8-bit codes with one f32 scale per 256 blocks, about 0.4 bits per weight less. The model is loaded (and cached) in this form.', kind: 'boolean', group: 'optimization', want: 'true or false' },
};

export const OPTION_KEYS = Object.keys(OPTION_FIELDS) as OptionKey[];

/** The seed's recipe (r 8, alpha 32, dropout 0.05, q_proj,v_proj, lr 2e-4, 3 epochs, batch 2,
 *  gradient accumulation 4), taken from the layers that define LoRA and the optimizer. */
export const DEFAULT_OPTIONS: Readonly<TrainOptions> = {
  rank: DEFAULT_LORA.rank, alpha: DEFAULT_LORA.alpha, dropout: DEFAULT_LORA.dropout, rslora: DEFAULT_LORA.rslora,
  targets: [...DEFAULT_LORA.targets], lr: DEFAULT_TRAIN.lr, epochs: DEFAULT_TRAIN.epochs, batch: DEFAULT_TRAIN.batch,
  gradAccum: DEFAULT_TRAIN.gradAccum, seqLen: 1024, schedule: DEFAULT_TRAIN.schedule, warmupSteps: DEFAULT_TRAIN.warmupSteps,
  weightDecay: DEFAULT_TRAIN.weightDecay, maxGradNorm: DEFAULT_TRAIN.maxGradNorm, seed: DEFAULT_TRAIN.seed,
  checkpointing: false, checkpointEvery: 10, storage: 'f16', doubleQuant: false, packing: false,
};

/** `gradAccum` → `grad-accum`: the CLI flag and the form's test id. */
export function flagOf(key: OptionKey): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** The form's input attributes: an open bound becomes the nearest step inside it. */
export function inputAttrs(key: OptionKey): { min?: number; max?: number; step: number | 'any' } {
  const f = OPTION_FIELDS[key];
  const step = f.step ?? 'any';
  const max = f.max !== undefined && f.maxOpen && typeof step === 'number' ? +(f.max - step).toFixed(10) : f.max;
  return { min: f.min, max, step };
}

function valid(f: OptionField, v: unknown): boolean {
  switch (f.kind) {
    case 'boolean':
      return typeof v === 'boolean';
    case 'schedule':
      return (SCHEDULES as readonly unknown[]).includes(v);
    case 'storage':
      return (STORAGES as readonly unknown[]).includes(v);
    case 'targets':
      return Array.isArray(v) && v.length > 0 && v.every((t) => (ALL_MODULE_NAMES as readonly unknown[]).includes(t)) && new Set(v).size === v.length;
    case 'int':
    case 'number': {
      if (typeof v !== 'number' || !Number.isFinite(v)) return false;
      if (f.kind === 'int' && !Number.isInteger(v)) return false;
      if (f.min !== undefined && (f.minOpen ? v <= f.min : v < f.min)) return false;
      if (f.max !== undefined && (f.maxOpen ? v >= f.max : v > f.max)) return false;
      return true;
    }
  }
}

/** The message for a bad value of `key`; `name` is how the caller's user knows the field. */
export function optionMessage(key: OptionKey, name = OPTION_FIELDS[key].label): string {
  return `${name} must be ${OPTION_FIELDS[key].want}.`;
}

export type OptionErrors = Partial<Record<OptionKey, string>>;

/**
 * The one validator: a message per bad field among `keys` (the form leaves seqLen to the dataset
 * panel). An absent maxSteps means no limit, an absent storage f32, an absent packing none and an
 * absent doubleQuant off (runs saved before the options);
 * every other field must be there.
 */
export function optionErrors(o: Partial<TrainOptions>, keys: readonly OptionKey[] = OPTION_KEYS): OptionErrors {
  const errors: OptionErrors = {};
  for (const k of keys) {
    const v = o[k];
    if ((k === 'maxSteps' || k === 'storage' || k === 'packing' || k === 'doubleQuant') && v === undefined) continue;
    if (!valid(OPTION_FIELDS[k], v)) errors[k] = optionMessage(k);
  }
  return errors;
}

/** Throws a UsageError naming the first bad field (as `name(key)` calls it: `--grad-accum` for the CLI). */
export function checkTrainOptions(o: Partial<TrainOptions>, name: (k: OptionKey) => string = (k) => k): TrainOptions {
  for (const k of OPTION_KEYS) {
    if (optionErrors(o, [k])[k] === undefined) continue;
    throw new UsageError(`Invalid training option ${name(k)}: ${JSON.stringify(o[k]) ?? 'missing'}.`, optionMessage(k, name(k)), { field: k, value: o[k] });
  }
  return o as TrainOptions;
}

/**
 * Options from command-line values (`--lr 2e-4`, `--rslora`), absent flags taking the defaults, then
 * checked. A number is parsed strictly: `--lr=` or `--lr abc` is refused, not read as 0 or NaN.
 */
export function optionsFromFlags(values: Record<string, string | boolean | undefined>, defaults: TrainOptions = DEFAULT_OPTIONS): TrainOptions {
  const o: Record<string, unknown> = { ...defaults, targets: [...defaults.targets] };
  for (const k of OPTION_KEYS) {
    const flag = flagOf(k), raw = values[flag];
    if (raw === undefined) continue;
    const f = OPTION_FIELDS[k];
    if (f.kind === 'boolean') o[k] = Boolean(raw);
    else if (f.kind === 'targets') o[k] = parseTargets(String(raw));
    else if (f.kind === 'schedule') o[k] = parseSchedule(String(raw));
    else if (f.kind === 'storage') o[k] = String(raw); // checked below, with the field's words
    else {
      const s = String(raw).trim();
      const n = s === '' ? NaN : Number(s);
      if (!Number.isFinite(n)) throw new UsageError(`--${flag} must be a number, got "${raw}".`, optionMessage(k, `--${flag}`), { field: k, value: raw });
      o[k] = n;
    }
  }
  if (o.maxSteps === 0) delete o.maxSteps;
  return checkTrainOptions(o as Partial<TrainOptions>, (k) => `--${flagOf(k)}`);
}

/** The `parseArgs` option table for every option flag. */
export function optionFlags(): Record<string, { type: 'string' | 'boolean' }> {
  return Object.fromEntries(OPTION_KEYS.map((k) => [flagOf(k), { type: OPTION_FIELDS[k].kind === 'boolean' ? 'boolean' : 'string' }]));
}

/** `--storage` for the commands that load a model without training options (eval, generate): the
 *  same field, default and message as the training option. */
export function storageFromFlag(raw: string | boolean | undefined): Storage {
  const v = raw === undefined ? DEFAULT_OPTIONS.storage : raw;
  if (!(STORAGES as readonly unknown[]).includes(v)) {
    throw new UsageError(`Invalid option --storage: ${JSON.stringify(v)}.`, optionMessage('storage', '--storage'), { field: 'storage', value: v });
  }
  return v as Storage;
}

/** `--rank 8` style usage text for the CLI's help, defaults shown. */
export function optionUsage(keys: readonly OptionKey[]): string {
  return keys.map((k) => {
    const d = DEFAULT_OPTIONS[k];
    return OPTION_FIELDS[k].kind === 'boolean' ? `[--${flagOf(k)}]` : `[--${flagOf(k)} ${Array.isArray(d) ? d.join(',') : d ?? 'N'}]`;
  }).join(' ');
}

export interface DerivedOptions extends StepPlan {
  /** Examples per optimizer step: batch × gradient accumulation. */
  effectiveBatch: number;
}

/** What the options imply for a training split of `trainExamples`: the one step count the CLI, the
 *  worker, the form and the trainer all use (planSteps). */
export function derive(o: Pick<TrainOptions, 'batch' | 'gradAccum' | 'epochs' | 'maxSteps'>, trainExamples: number): DerivedOptions {
  return { effectiveBatch: o.batch * o.gradAccum, ...planSteps(trainExamples, o) };
}
