// The training loop's guard against divergence, without a GPU: optimizerStep is replaced by one that
// returns a chosen loss and gradient norm, as the GPU readback would.
import { describe, expect, test, vi } from 'vitest';
import type { Sequence } from '../data/types.ts';
import { TrainingDivergedError } from '../errors.ts';
import type { LlamaModel } from '../model/llama.ts';
import type { LoraState } from '../model/lora.ts';
import { DEFAULT_TRAIN, Trainer } from './trainer.ts';

const results: { loss: number; gradNorm: number }[] = [];
vi.mock('./step.ts', async (orig) => ({
  ...(await orig<typeof import('./step.ts')>()),
  optimizerStep: vi.fn(async () => ({ ...results.shift()!, tokens: 8 })),
}));

const seqs = (n: number): Sequence[] => Array.from({ length: n }, () => ({
  input_ids: Int32Array.of(1, 2, 3, 4), labels: Int32Array.of(-100, 2, 3, 4), position_ids: Int32Array.of(0, 1, 2, 3), seq_lengths: [4],
}));

function trainer(): Trainer {
  return new Trainer({} as LlamaModel, {} as LoraState, { train: seqs(8), validation: [] }, { ...DEFAULT_TRAIN, batch: 2, gradAccum: 1, epochs: 1, shuffle: false }, 0);
}

describe('Trainer stops on a non-finite step', () => {
  for (const [what, bad] of [['NaN loss', { loss: NaN, gradNorm: 1 }], ['infinite loss', { loss: Infinity, gradNorm: 1 }], ['NaN gradient norm', { loss: 2, gradNorm: NaN }], ['infinite gradient norm', { loss: 2, gradNorm: Infinity }]] as const) {
    test(`a ${what} at step 3 throws TrainingDivergedError naming the step; the position stays at step 2`, async () => {
      results.length = 0;
      results.push({ loss: 2.5, gradNorm: 1 }, { loss: 2.4, gradNorm: 0.9 }, bad, { loss: 2.3, gradNorm: 1 });
      const t = trainer();
      const seen: number[] = [];
      const err = await (async () => {
        for await (const s of t.run()) seen.push(s.step);
      })().then(() => null, (e: unknown) => e);
      expect(err).toBeInstanceOf(TrainingDivergedError);
      expect((err as TrainingDivergedError).message).toMatch(/^Training diverged at step 3: /);
      expect((err as TrainingDivergedError).details).toMatchObject({ step: 3 });
      expect(seen).toEqual([1, 2]);
      expect(t.position).toEqual({ step: 2, epoch: 0, micro: 2 });
    });
  }

  test('finite steps run to the end (a step with no trained token reports loss 0, which is finite)', async () => {
    results.length = 0;
    results.push({ loss: 2.5, gradNorm: 1 }, { loss: 0, gradNorm: 0 }, { loss: 2.4, gradNorm: 1 }, { loss: 2.3, gradNorm: 1 });
    const steps = [];
    for await (const s of trainer().run()) steps.push(s.loss);
    expect(steps).toEqual([2.5, 0, 2.4, 2.3]);
  });
});
