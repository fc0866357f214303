// Training options and the seed's defaults, in a module of their own so the page (the training
// form) can import them without pulling in the GPU kernels the trainer uses.
import type { Schedule } from './schedule.ts';

export interface TrainConfig {
  lr: number;
  epochs: number;
  /** Stop after this many optimizer steps (overrides epochs, as in Transformers). */
  maxSteps?: number;
  batch: number;
  gradAccum: number;
  schedule: Schedule;
  warmupSteps: number;
  weightDecay: number;
  /** 0 turns clipping off. */
  maxGradNorm: number;
  seed: number;
  shuffle: boolean;
}

export const DEFAULT_TRAIN: TrainConfig = {
  lr: 2e-4, epochs: 3, batch: 2, gradAccum: 4, schedule: 'linear', warmupSteps: 0, weightDecay: 0,
  maxGradNorm: 1, seed: 0, shuffle: true,
};

export interface StepPlan {
  /** Optimizer steps in one pass over the split (a last short group of micro-batches counts). */
  stepsPerEpoch: number;
  /** Optimizer steps the run takes: maxSteps when set, else epochs × stepsPerEpoch (0 without data). */
  totalSteps: number;
}

/** The one step-count formula (the trainer's loop, the CLI's progress, the worker's estimate and the
 *  form's time estimate all use it): micro-batches of `batch`, grouped `gradAccum` to a step. */
export function planSteps(trainExamples: number, o: Pick<TrainConfig, 'batch' | 'gradAccum' | 'epochs' | 'maxSteps'>): StepPlan {
  if (trainExamples <= 0) return { stepsPerEpoch: 0, totalSteps: 0 };
  const stepsPerEpoch = Math.max(1, Math.ceil(Math.ceil(trainExamples / o.batch) / o.gradAccum));
  return { stepsPerEpoch, totalSteps: o.maxSteps && o.maxSteps > 0 ? o.maxSteps : o.epochs * stepsPerEpoch };
}
