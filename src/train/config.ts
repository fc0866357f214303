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
