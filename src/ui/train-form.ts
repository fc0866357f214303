// The training form as data: the options as the form edits them, their validation and defaults from
// the one options schema (src/app/options.ts), and the conversion into the worker's TrainOptions.
// Components bind to a TrainForm and show `validateForm`'s messages next to the inputs; nothing here
// touches the DOM.
import { LINEAR_MODULES } from '../io/hf-names.ts';
import { SCHEDULES } from '../train/schedule.ts';
import { DEFAULT_OPTIONS, OPTION_KEYS, STORAGES, derive, optionErrors, type OptionErrors, type TrainOptions } from '../app/options.ts';

/** The worker's TrainOptions as a form edits them: the sequence length belongs to the dataset
 *  panel, and "no step limit" is 0 rather than absent. */
export type TrainForm = Omit<TrainOptions, 'seqLen' | 'maxSteps'> & {
  /** 0 = no limit (train for `epochs`). */
  maxSteps: number;
};

const { seqLen: _seqLen, ...defaults } = DEFAULT_OPTIONS;
/** The seed's defaults, from the options schema the CLI and the worker use too. */
export const DEFAULT_FORM: TrainForm = { ...defaults, targets: [...defaults.targets], maxSteps: defaults.maxSteps ?? 0 };

/** The form's fields (everything but the dataset panel's sequence length). */
export const FORM_KEYS = OPTION_KEYS.filter((k): k is keyof TrainForm => k !== 'seqLen');

export const ALL_TARGETS = LINEAR_MODULES;
export { SCHEDULES, STORAGES };

export type FormErrors = Partial<Record<keyof TrainForm, string>>;

export function validateForm(f: TrainForm): FormErrors {
  return optionErrors(f, FORM_KEYS) as OptionErrors as FormErrors;
}

export function toTrainOptions(f: TrainForm, seqLen: number): TrainOptions {
  const { maxSteps, ...rest } = f;
  return { ...rest, targets: [...f.targets], ...(maxSteps > 0 ? { maxSteps } : {}), seqLen };
}

/** Fields that differ from the defaults (the form shows "n changed" and a reset button). */
export function changedFields(f: TrainForm): (keyof TrainForm)[] {
  return FORM_KEYS.filter((k) => JSON.stringify(f[k]) !== JSON.stringify(DEFAULT_FORM[k]));
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

/** `rows`: the rows the trainer steps over (fewer than the examples with packing, each holding
 *  trainExamples / rows examples on average); the examples themselves when absent. */
export function workEstimate(params: number, meanTokens: number, trainExamples: number, f: TrainForm, totalSteps?: number, rows = trainExamples): WorkEstimate {
  const d = derive(f, rows);
  const steps = totalSteps ?? d.totalSteps;
  const tokens = steps * d.effectiveBatch * meanTokens * (rows > 0 ? trainExamples / rows : 1);
  const flops = 4 * params * tokens;
  return { steps, tokens, flops, seconds: [flops / FAST_FLOPS, flops / SLOW_FLOPS] };
}
