// The training form as data: the seed's defaults, the CLI's other options, validation that names
// the field, and the conversion into the worker's TrainOptions. Components bind to a TrainForm and
// show `validateForm`'s messages next to the inputs; nothing here touches the DOM.
import { LINEAR_MODULES } from '../io/hf-names.ts';
import { SCHEDULES } from '../train/schedule.ts';
import type { TrainOptions } from '../worker/api.ts';
import { DEFAULT_LORA } from '../model/lora.ts';
import { DEFAULT_TRAIN } from '../train/config.ts';

/** The worker's TrainOptions as a form edits them: the sequence length belongs to the dataset
 *  panel, and "no step limit" is 0 rather than absent. */
export type TrainForm = Omit<TrainOptions, 'seqLen' | 'maxSteps'> & {
  /** 0 = no limit (train for `epochs`). */
  maxSteps: number;
};

/** The seed's defaults (DESIGN.md), from the one place the CLI takes them too. */
export const DEFAULT_FORM: TrainForm = {
  rank: DEFAULT_LORA.rank, alpha: DEFAULT_LORA.alpha, dropout: DEFAULT_LORA.dropout, rslora: DEFAULT_LORA.rslora,
  targets: [...DEFAULT_LORA.targets], lr: DEFAULT_TRAIN.lr, epochs: DEFAULT_TRAIN.epochs, maxSteps: 0,
  batch: DEFAULT_TRAIN.batch, gradAccum: DEFAULT_TRAIN.gradAccum, schedule: DEFAULT_TRAIN.schedule,
  warmupSteps: DEFAULT_TRAIN.warmupSteps, weightDecay: DEFAULT_TRAIN.weightDecay, maxGradNorm: DEFAULT_TRAIN.maxGradNorm,
  seed: DEFAULT_TRAIN.seed, checkpointing: false, checkpointEvery: 10,
};

export const ALL_TARGETS = LINEAR_MODULES;
export { SCHEDULES };

export type FormErrors = Partial<Record<keyof TrainForm, string>>;

function int(v: number, min: number): boolean {
  return Number.isInteger(v) && v >= min;
}

export function validateForm(f: TrainForm): FormErrors {
  const e: FormErrors = {};
  if (!int(f.rank, 1)) e.rank = 'Rank must be a whole number of at least 1 (8 to 32 is usual).';
  if (!(f.alpha > 0)) e.alpha = 'Alpha must be above 0 (often 2 to 4 times the rank).';
  if (!(f.dropout >= 0 && f.dropout < 1)) e.dropout = 'Dropout must be at least 0 and below 1.';
  if (f.targets.length === 0) e.targets = 'Pick at least one layer to adapt.';
  if (!(f.lr > 0 && f.lr < 1)) e.lr = 'The learning rate must be above 0 and below 1 (1e-4 to 3e-4 is usual for LoRA).';
  if (!int(f.epochs, 1)) e.epochs = 'Epochs must be a whole number of at least 1.';
  if (!int(f.maxSteps, 0)) e.maxSteps = 'Max steps must be a whole number (0 = no limit).';
  if (!int(f.batch, 1)) e.batch = 'Batch size must be a whole number of at least 1.';
  if (!int(f.gradAccum, 1)) e.gradAccum = 'Gradient accumulation must be a whole number of at least 1.';
  if (!SCHEDULES.includes(f.schedule)) e.schedule = `Pick one of ${SCHEDULES.join(', ')}.`;
  if (!int(f.warmupSteps, 0)) e.warmupSteps = 'Warm-up steps must be a whole number (0 = none).';
  if (!(f.weightDecay >= 0)) e.weightDecay = 'Weight decay must be 0 or more.';
  if (!(f.maxGradNorm >= 0)) e.maxGradNorm = 'Max gradient norm must be 0 (no clipping) or more.';
  if (!Number.isInteger(f.seed)) e.seed = 'The seed must be a whole number.';
  if (!int(f.checkpointEvery, 1)) e.checkpointEvery = 'Checkpoint interval must be a whole number of steps, at least 1.';
  return e;
}

export function toTrainOptions(f: TrainForm, seqLen: number): TrainOptions {
  return {
    rank: f.rank, alpha: f.alpha, dropout: f.dropout, rslora: f.rslora, targets: [...f.targets], lr: f.lr,
    epochs: f.epochs, ...(f.maxSteps > 0 ? { maxSteps: f.maxSteps } : {}), batch: f.batch, gradAccum: f.gradAccum,
    seqLen, schedule: f.schedule, warmupSteps: f.warmupSteps, weightDecay: f.weightDecay, maxGradNorm: f.maxGradNorm,
    seed: f.seed, checkpointing: f.checkpointing, checkpointEvery: f.checkpointEvery,
  };
}

/** Fields that differ from the defaults (the form shows "n changed" and a reset button). */
export function changedFields(f: TrainForm): (keyof TrainForm)[] {
  return (Object.keys(DEFAULT_FORM) as (keyof TrainForm)[]).filter((k) => JSON.stringify(f[k]) !== JSON.stringify(DEFAULT_FORM[k]));
}

export interface WorkEstimate {
  steps: number;
  tokens: number;
  /** Training FLOPs: about 4·N per token through a frozen base (forward 2N, backward-input 2N). */
  flops: number;
  /** Seconds at a slow and a fast sustained WebGPU rate; a range, because nothing is measured yet. */
  seconds: [number, number];
}

// Sustained WebGPU training rates we assume before anything is measured: an integrated laptop GPU
// and a good desktop one. The ETA shown during training replaces this with the measured rate.
const SLOW_FLOPS = 0.3e12, FAST_FLOPS = 5e12;

export function workEstimate(params: number, meanTokens: number, trainExamples: number, f: TrainForm, totalSteps?: number): WorkEstimate {
  const perStep = f.batch * f.gradAccum;
  const steps = totalSteps ?? (f.maxSteps > 0 ? f.maxSteps : Math.ceil(trainExamples / perStep) * f.epochs);
  const tokens = steps * perStep * meanTokens;
  const flops = 4 * params * tokens;
  return { steps, tokens, flops, seconds: [flops / FAST_FLOPS, flops / SLOW_FLOPS] };
}
