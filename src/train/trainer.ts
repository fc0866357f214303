// The training loop: epochs of seeded-shuffled micro-batches, grouped into optimizer steps of
// `gradAccum` micro-batches, with the learning-rate schedule, a validation loss at the end of each
// epoch, and a resumable position. It yields one log record per optimizer step; the caller (CLI or
// worker) decides where records go.
import { makeBatches, shuffled, type Batch as DataBatch } from '../data/batch.ts';
import type { Sequence } from '../data/types.ts';
import { TrainingDivergedError, UsageError } from '../errors.ts';
import { IGNORE_INDEX } from '../kernels/cross_entropy.ts';
import type { Batch, LlamaModel } from '../model/llama.ts';
import type { LoraState } from '../model/lora.ts';
import { lrLambda } from './schedule.ts';
import { planSteps, type TrainConfig } from './config.ts';
import { countTargets, optimizerStep } from './step.ts';

export { DEFAULT_TRAIN, type TrainConfig } from './config.ts';

export interface StepLog {
  step: number;
  epoch: number;
  loss: number;
  lr: number;
  grad_norm: number;
  /** Input tokens (not padding) processed in the step. */
  tokens: number;
  tokens_per_s: number;
  /** Mean loss over the validation split, on the last step of an epoch (when there is one). */
  val_loss?: number;
}

/** Where the loop stands; enough to resume at the next optimizer step. */
export interface TrainPosition {
  step: number;
  epoch: number;
  /** Index of the next micro-batch within the epoch. */
  micro: number;
}

/** A data batch as the model takes it: u32 ids and positions, next-token targets (labels shifted
 *  left by one; the last position and padding get -100). */
export function toModelBatch(b: DataBatch): Batch {
  const { B, T } = b;
  const out: Batch = { B, T, ids: new Uint32Array(B * T), positions: new Uint32Array(B * T), targets: new Int32Array(B * T) };
  for (let i = 0; i < B * T; i++) {
    out.ids[i] = b.input_ids[i];
    out.positions[i] = b.position_ids[i];
    const lastOfRow = i % T === T - 1;
    out.targets[i] = lastOfRow ? IGNORE_INDEX : b.labels[i + 1];
  }
  return out;
}

function inputTokens(b: DataBatch): number {
  let n = 0;
  for (const m of b.attention_mask) n += m;
  return n;
}

/** Mean loss over every trained target of `seqs`, forward only (dropout off); one readback per batch. */
export async function evaluateLoss(model: LlamaModel, seqs: Sequence[], batch: number, padId: number): Promise<{ loss: number; tokens: number }> {
  let sum = 0, tokens = 0;
  for (const db of makeBatches(seqs, batch, padId)) {
    const b = toModelBatch(db);
    model.step(b, { gradScale: 0, seed: 0, training: false });
    const l = await model.gpu.readF32(model.plan.tensor('loss'), 0, b.B * b.T);
    for (const x of l) sum += x;
    tokens += countTargets(b);
  }
  return { loss: tokens ? sum / tokens : NaN, tokens };
}

export class Trainer {
  readonly stepsPerEpoch: number;
  readonly totalSteps: number;
  position: TrainPosition = { step: 0, epoch: 0, micro: 0 };

  constructor(
    readonly model: LlamaModel,
    readonly lora: LoraState,
    readonly data: { train: Sequence[]; validation: Sequence[] },
    readonly cfg: TrainConfig,
    readonly padId: number,
  ) {
    if (data.train.length === 0) throw new UsageError('The training split is empty.', 'Add examples to the dataset or lower --val-split.');
    ({ stepsPerEpoch: this.stepsPerEpoch, totalSteps: this.totalSteps } = planSteps(data.train.length, cfg));
  }

  private epochBatches(epoch: number): DataBatch[] {
    const order = this.cfg.shuffle ? shuffled(this.data.train, this.cfg.seed + epoch) : this.data.train;
    return makeBatches(order, this.cfg.batch, this.padId);
  }

  evaluate(seqs: Sequence[]): Promise<{ loss: number; tokens: number }> {
    return evaluateLoss(this.model, seqs, this.cfg.batch, this.padId);
  }

  /** Runs until totalSteps (or until `shouldStop()` says so between steps). */
  async *run(shouldStop: () => boolean = () => false): AsyncGenerator<StepLog> {
    const c = this.cfg;
    while (this.position.step < this.totalSteps && !shouldStop()) {
      const batches = this.epochBatches(this.position.epoch);
      while (this.position.micro < batches.length && this.position.step < this.totalSteps && !shouldStop()) {
        const group = batches.slice(this.position.micro, this.position.micro + c.gradAccum);
        const t0 = performance.now();
        const lr = c.lr * lrLambda(c.schedule, this.position.step, this.totalSteps, c.warmupSteps);
        const r = await optimizerStep(this.model, this.lora, group.map(toModelBatch), {
          lr, weightDecay: c.weightDecay, maxGradNorm: c.maxGradNorm, seed: c.seed,
        });
        // torch's clip_grad_norm_(error_if_nonfinite=True) stops here too: one NaN step poisons the
        // adapter and Adam's moments for good. The position stays at the last good step.
        if (!Number.isFinite(r.loss) || !Number.isFinite(r.gradNorm)) throw new TrainingDivergedError(this.position.step + 1, r.loss, r.gradNorm);
        const tokens = group.reduce((s, b) => s + inputTokens(b), 0);
        this.position.micro += group.length;
        this.position.step++;
        const log: StepLog = {
          step: this.position.step, epoch: this.position.epoch, loss: r.loss, lr, grad_norm: r.gradNorm, tokens,
          tokens_per_s: tokens / ((performance.now() - t0) / 1000),
        };
        const endOfEpoch = this.position.micro >= batches.length || this.position.step === this.totalSteps;
        if (endOfEpoch && this.data.validation.length) log.val_loss = (await this.evaluate(this.data.validation)).loss;
        yield log;
      }
      if (this.position.micro >= batches.length) {
        this.position.epoch++;
        this.position.micro = 0;
      }
    }
  }
}
