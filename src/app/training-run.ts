// One training run over the loaded base, for the site's worker and the CLI alike: the options
// checked by the one schema, a training plan opened over the weights, the Trainer (built here and
// nowhere else), the loop with its step events, validation (the trainer's end-of-epoch loss and
// `evaluate` for a held-out set), checkpoints with resume, and, where a checkpoint store is given
// (the site), recovery from a lost device: a new device, the base from the cache, the run from its
// last checkpoint.
import { UsageError, ModelFileError } from '../errors.ts';
import type { Sequence } from '../data/types.ts';
import type { DerivedModel } from '../model/open.ts';
import type { ImportedAdapter } from '../model/adapter.ts';
import type { LoraSpec } from '../model/lora.ts';
import type { TemplateName } from '../data/templates.ts';
import { DEFAULT_MEMORY_BUDGET, checkFit, fitSettings, nearestFit, type FitContext, type FitSettings } from './fit.ts';
import type { CheckpointState, CheckpointStore } from '../train/checkpoint.ts';
import type { RunDataset } from '../export/run-record.ts';
import { Trainer, evaluateLoss, type StepLog, type TrainConfig } from '../train/trainer.ts';
import { packSequences } from '../data/batch.ts';
import { emit } from './events.ts';
import type { ModelStore } from './model-store.ts';
import { checkTrainOptions, derive, type TrainOptions } from './options.ts';

export interface Estimate {
  /** GPU bytes by category, from the memory plan. */
  bytes: Record<string, number>;
  peakBytes: number;
  /** Whether the plan fits the device's limits and the memory budget. */
  fits: boolean;
  /** The memory budget it was measured against. */
  budget: number;
  /** When it does not fit: the nearest settings that do (src/app/fit.ts), if any. */
  suggestion?: { settings: FitSettings; changes: string[]; peakBytes: number; bytes: Record<string, number> };
  totalSteps: number;
  /** Rows the trainer steps over: the training examples, or fewer rows with packing. */
  trainRows: number;
}

export type TrainEvent =
  | { type: 'step'; log: StepLog; totalSteps: number; gpuBytes: Record<string, number> }
  | { type: 'checkpoint'; step: number }
  | { type: 'paused'; step: number }
  | { type: 'device-lost'; resumedFromStep: number }
  | { type: 'done'; step: number }
  | { type: 'stopped'; step: number }
  /** The site's engine saved the finished (or stopped) run's adapter in its library. */
  | { type: 'saved'; id: string; name: string };

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
  /** The dataset's identity and the validation split as given, for the run record of the adapter
   *  saved at the end (a run resumed after a reload has only what its checkpoint kept). */
  dataset?: DatasetIdentity;
}

export interface DatasetIdentity {
  record: RunDataset;
  valSplit: number;
}

export interface RunData {
  train: Sequence[];
  validation: Sequence[];
}

export interface RunSetup {
  /** The dataset's file name, kept with checkpoints. */
  datasetFile: string;
  /** The template the examples were rendered with, kept with checkpoints. */
  template?: TemplateName;
  /** Shuffle each epoch (seeded); default true. */
  shuffle?: boolean;
  /** Start from this adapter (its own rank, alpha and targets win: its weights have those shapes). */
  init?: ImportedAdapter;
  dataset?: DatasetIdentity;
}

export type Checkpoints = CheckpointStore<CheckpointInfo>;

export function loraSpec(o: TrainOptions): LoraSpec {
  return { rank: o.rank, alpha: o.alpha, dropout: o.dropout, rslora: o.rslora, targets: [...o.targets] };
}

export function trainConfig(o: TrainOptions, shuffle: boolean): TrainConfig {
  return {
    lr: o.lr, epochs: o.epochs, maxSteps: o.maxSteps, batch: o.batch, gradAccum: o.gradAccum, schedule: o.schedule,
    warmupSteps: o.warmupSteps, weightDecay: o.weightDecay, maxGradNorm: o.maxGradNorm, seed: o.seed, shuffle,
  };
}

/** The rows a run trains on: the examples as they are, or packed into rows of seqLen tokens
 *  (options.packing). Packing happens here, at the start of each run, so the dataset, checkpoints and
 *  the run record keep the examples themselves. */
export function trainingRows(o: Pick<TrainOptions, 'packing' | 'seqLen'>, train: readonly Sequence[]): Sequence[] {
  return o.packing ? packSequences(train, o.seqLen) : [...train];
}

export { DEFAULT_MEMORY_BUDGET };

export class TrainingRun {
  logs: StepLog[] = [];
  private pauseRequested = false;
  private stopRequested = false;
  private running = false;

  private constructor(
    private readonly store: ModelStore,
    readonly opts: TrainOptions,
    readonly data: RunData,
    readonly setup: RunSetup,
    private run: DerivedModel,
    private trainer: Trainer,
  ) {}

  /** The memory plan and step count of a run, before anything is allocated. */
  static async estimate(store: ModelStore, opts: TrainOptions, train: readonly Sequence[], budget = DEFAULT_MEMORY_BUDGET): Promise<Estimate> {
    const base = store.requireModel();
    checkTrainOptions(opts);
    const gpu = await store.device();
    // The loaded base fixes its tables, double quantization and RoPE rows; the run's options are free.
    const ctx: FitContext = { dims: base.config, quant: base.quant, tableStorage: base.plan.tablesF16 ? 'f16' : 'f32', maxPositions: base.plan.opts.maxPositions };
    const settings = fitSettings(opts, base.plan.opts.doubleQuant ?? false), device = { budget, limits: gpu.limits };
    const r = checkFit(ctx, settings, device);
    const near = r.fits ? undefined : nearestFit(ctx, settings, device);
    const trainRows = trainingRows(opts, train).length;
    return {
      bytes: r.byCategory, peakBytes: r.peakBytes, fits: r.fits, budget, totalSteps: derive(opts, trainRows).totalSteps, trainRows,
      ...(near ? { suggestion: { settings: near.settings, changes: near.changes, peakBytes: near.report.peakBytes, bytes: near.report.byCategory } } : {}),
    };
  }

  /** A new run: the options checked, a training plan over the loaded weights, LoRA from the seed. */
  static async start(store: ModelStore, opts: TrainOptions, data: RunData, setup: RunSetup): Promise<TrainingRun> {
    checkTrainOptions(opts);
    const longest = Math.max(0, ...data.train.map((s) => s.input_ids.length), ...data.validation.map((s) => s.input_ids.length));
    if (longest > opts.seqLen) {
      throw new UsageError(`The dataset has sequences of ${longest} tokens, longer than the training sequence length ${opts.seqLen}.`,
        `Prepare the dataset again with seqLen ${opts.seqLen}, or train with seqLen ${longest} or more.`, { field: 'seqLen' });
    }
    const { run, trainer } = await TrainingRun.build(store, opts, data, setup);
    return new TrainingRun(store, opts, data, setup, run, trainer);
  }

  /** A run rebuilt from a checkpoint on the store's model (after a reload). */
  static async resume(store: ModelStore, ck: CheckpointState<CheckpointInfo>): Promise<TrainingRun> {
    const r = await TrainingRun.start(store, ck.info.options, { train: ck.train, validation: ck.validation }, { datasetFile: ck.info.datasetFile, template: ck.info.template, dataset: ck.info.dataset });
    r.restore(ck);
    return r;
  }

  private static async build(store: ModelStore, opts: TrainOptions, data: RunData, setup: RunSetup): Promise<{ run: DerivedModel; trainer: Trainer }> {
    const base = store.requireModel();
    const run = await store.open({
      batch: opts.batch, seqLen: opts.seqLen, lora: setup.init?.spec ?? loraSpec(opts), training: true,
      checkpointing: opts.checkpointing, gradAccum: opts.gradAccum, seed: opts.seed, storage: opts.storage ?? 'f32',
    });
    try {
      if (setup.init) run.lora!.load(setup.init.weights);
      const rows = { train: trainingRows(opts, data.train), validation: data.validation };
      return { run, trainer: new Trainer(run.model, run.lora!, rows, trainConfig(opts, setup.shuffle ?? true), base.tokenizer.padId) };
    } catch (e) {
      store.close(run);
      throw e;
    }
  }

  /** The model being trained, with its adapter (chat and export use it). */
  get model(): DerivedModel {
    return this.run;
  }

  get totalSteps(): number {
    return this.trainer.totalSteps;
  }

  get step(): number {
    return this.trainer.position.step;
  }

  get active(): boolean {
    return this.running;
  }

  pause(): void {
    if (this.running) this.pauseRequested = true;
  }

  stop(): void {
    if (this.running) this.stopRequested = true;
  }

  dispose(): void {
    this.store.close(this.run);
  }

  /** Mean loss of `seqs` under the current adapter (forward only). */
  evaluate(seqs: Sequence[]): Promise<{ loss: number; tokens: number }> {
    return this.trainer.evaluate(seqs);
  }

  /** Mean loss of a model (with an adapter or not) on `seqs`, in batches of `batch` up to `seqLen` tokens. */
  static async evaluate(store: ModelStore, seqs: Sequence[], shape: { batch: number; seqLen: number }, adapter?: ImportedAdapter): Promise<{ loss: number; tokens: number }> {
    const run = adapter ? await store.openAdapter(adapter, shape) : await store.open({ ...shape, training: false });
    try {
      return await evaluateLoss(run.model, seqs, shape.batch, store.requireModel().tokenizer.padId);
    } finally {
      store.close(run);
    }
  }

  async checkpoint(): Promise<CheckpointState<CheckpointInfo>> {
    const lora = this.run.lora!, gpu = this.run.model.gpu, base = this.store.requireModel();
    const [params, m, v] = [await gpu.readF32(lora.params, 0, lora.totalFloats), await gpu.readF32(lora.m, 0, lora.totalFloats), await gpu.readF32(lora.v, 0, lora.totalFloats)];
    return {
      info: { modelKey: base.key, step: this.step, totalSteps: this.totalSteps, savedAt: Date.now(), options: this.opts, datasetFile: this.setup.datasetFile, template: this.setup.template, dataset: this.setup.dataset },
      position: { ...this.trainer.position }, loraStep: lora.step, logs: this.logs, params, m, v, train: this.data.train, validation: this.data.validation,
    };
  }

  private restore(ck: CheckpointState<CheckpointInfo>): void {
    const lora = this.run.lora!, gpu = this.run.model.gpu;
    if (ck.params.length !== lora.totalFloats) {
      this.dispose();
      throw new ModelFileError(`The checkpoint's adapter has ${ck.params.length} values; this model's has ${lora.totalFloats}.`,
        'The checkpoint belongs to another model; start a new run.', { reason: 'checkpoint-mismatch' });
    }
    gpu.upload(lora.params, ck.params);
    gpu.upload(lora.m, ck.m);
    gpu.upload(lora.v, ck.v);
    lora.step = ck.loraStep;
    this.trainer.position = { ...ck.position };
    this.logs = [...ck.logs];
  }

  /**
   * After the store recovered from a lost device (every run died with it): this run again on the
   * new device, from its last checkpoint, or from step 0 with the same options when there is none
   * yet. Returns the step it goes on from.
   */
  async reopen(checkpoints?: Checkpoints): Promise<number> {
    const ck = await checkpoints?.load();
    const { run, trainer } = await TrainingRun.build(this.store, this.opts, this.data, this.setup);
    this.run = run;
    this.trainer = trainer;
    this.logs = [];
    if (ck && ck.info.modelKey === this.store.requireModel().key) {
      this.restore(ck);
      return ck.info.step;
    }
    return 0;
  }

  /** The step events of the run so far (a reloaded page lost its chart): replayed before going on. */
  replay(onEvent: (e: TrainEvent) => unknown): void {
    for (const log of this.logs) void emit(onEvent, { type: 'step', log, totalSteps: this.totalSteps, gpuBytes: { ...this.run.model.gpu.bytes } });
  }

  /**
   * Trains until the end, a pause or a stop. With `checkpoints` (the site) a checkpoint is saved
   * every opts.checkpointEvery steps and at the end, and a lost device resumes from the last one;
   * without (the CLI) a lost device is an error. The last event is awaited before returning.
   */
  async train(onEvent: (e: TrainEvent) => unknown, checkpoints?: Checkpoints): Promise<void> {
    this.running = true;
    this.pauseRequested = this.stopRequested = false;
    try {
      for (;;) {
        try {
          await this.loop(onEvent, checkpoints);
          return;
        } catch (e) {
          if (!checkpoints || !(await this.store.isDeviceLoss(e))) throw e;
          await this.store.recover();
          void emit(onEvent, { type: 'device-lost', resumedFromStep: await this.reopen(checkpoints) });
        }
      }
    } finally {
      this.running = false;
    }
  }

  private async loop(onEvent: (e: TrainEvent) => unknown, checkpoints?: Checkpoints): Promise<void> {
    const every = this.opts.checkpointEvery;
    const save = async (step: number) => {
      if (!checkpoints) return;
      await checkpoints.save(await this.checkpoint());
      void emit(onEvent, { type: 'checkpoint', step });
    };
    for await (const log of this.trainer.run(() => this.pauseRequested || this.stopRequested)) {
      this.logs.push(log);
      void emit(onEvent, { type: 'step', log, totalSteps: this.totalSteps, gpuBytes: { ...this.run.model.gpu.bytes } });
      if (log.step % every === 0 && log.step < this.totalSteps) await save(log.step);
    }
    const step = this.step;
    await save(step);
    if (this.stopRequested) await emit(onEvent, { type: 'stopped', step });
    else if (this.pauseRequested) await emit(onEvent, { type: 'paused', step });
    else await emit(onEvent, { type: 'done', step });
  }

}

/** The step log as CSV (the site's metrics download). */
export function metricsCsv(logs: StepLog[]): string {
  const rows = ['step,loss,val_loss,lr,grad_norm,tokens_per_s'];
  for (const l of logs) rows.push([l.step, l.loss, l.val_loss ?? '', l.lr, l.grad_norm, l.tokens_per_s].join(','));
  return rows.join('\n') + '\n';
}
