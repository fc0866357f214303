// Learning-rate schedules exactly as Transformers builds them (optimization.py: get_*_schedule_with_warmup)
// and LambdaLR applies them: the optimizer step with 0-based index k uses lr · λ(k).
import { UsageError } from '../errors.ts';

export const SCHEDULES = ['constant', 'linear', 'cosine'] as const;
export type Schedule = (typeof SCHEDULES)[number];

export function parseSchedule(s: string): Schedule {
  if ((SCHEDULES as readonly string[]).includes(s)) return s as Schedule;
  throw new UsageError(`Unknown learning-rate schedule "${s}".`, `Use one of: ${SCHEDULES.join(', ')}.`, { field: 'schedule' });
}

/** λ(step) for a run of `total` optimizer steps with `warmup` warmup steps. */
export function lrLambda(schedule: Schedule, step: number, total: number, warmup: number): number {
  if (step < warmup) return step / Math.max(1, warmup);
  switch (schedule) {
    case 'constant':
      return 1;
    case 'linear':
      return Math.max(0, (total - step) / Math.max(1, total - warmup));
    case 'cosine': {
      // num_cycles = 0.5: half a cosine from 1 down to 0.
      const progress = (step - warmup) / Math.max(1, total - warmup);
      return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * 2 * 0.5 * progress)));
    }
  }
}
