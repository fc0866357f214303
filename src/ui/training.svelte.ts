// Training state: the form, the engine's estimate, the run's phase and its step log. The engine
// drives the loop and reports events; this class only records them, so the chart, the ETA and the
// buttons all read one source.
import type { TemplateName } from '../data/templates.ts';
import type { StepLog } from '../train/trainer.ts';
import type { CheckpointInfo, Estimate, TrainEvent, TrainOptions } from '../worker/api.ts';
import { callback, type Engine } from './engine.ts';
import { StepClock } from './format.ts';
import { readable, type Readable } from './readable.ts';
import { DEFAULT_FORM, toTrainOptions, validateForm, type TrainForm } from './train-form.ts';

export type TrainPhase = 'idle' | 'running' | 'pausing' | 'paused' | 'stopping' | 'stopped' | 'done' | 'failed';

export class Training {
  form = $state<TrainForm>({ ...DEFAULT_FORM, targets: [...DEFAULT_FORM.targets] });
  estimate = $state<Estimate | undefined>();
  estimateError = $state<Readable | undefined>();
  phase = $state<TrainPhase>('idle');
  logs = $state<StepLog[]>([]);
  step = $state(0);
  totalSteps = $state(0);
  gpuBytes = $state<Record<string, number>>({});
  lastCheckpoint = $state<number | undefined>();
  deviceLosses = $state(0);
  notice = $state('');
  error = $state<Readable | undefined>();
  eta = $state(NaN);
  /** A run left by an earlier visit (after a reload), offered for resuming. */
  pending = $state<CheckpointInfo | null>(null);
  /** The options of the current (or last) run, for exporting and for the summary line. */
  running = $state<TrainOptions | undefined>();
  /** The template the current (or last) run's examples were rendered with; the chat frames prompts
   *  the same way, also after a reload (the checkpoint records it). */
  template = $state<TemplateName | undefined>();
  /** The library entry the finished run's adapter was saved as. */
  saved = $state<{ id: string; name: string } | undefined>();
  /** Called once the engine saved the run's adapter in the library (the studio refreshes the list). */
  onSaved: (() => void) | undefined;

  private clock = new StepClock();
  /** After a reload the engine first replays the logged steps up to the checkpoint; those are
   *  history, not timing, and must not feed the ETA. */
  private replayUntil = 0;

  constructor(private readonly engine: Engine) {}

  get formErrors() {
    return validateForm(this.form);
  }

  get active(): boolean {
    return this.phase === 'running' || this.phase === 'pausing' || this.phase === 'stopping';
  }

  resetForm(): void {
    this.form = { ...DEFAULT_FORM, targets: [...DEFAULT_FORM.targets] };
  }

  async refreshEstimate(seqLen: number, budget?: number): Promise<void> {
    if (Object.keys(this.formErrors).length) {
      this.estimate = undefined;
      return;
    }
    try {
      this.estimate = await this.engine.estimate(toTrainOptions(this.form, seqLen), budget);
      this.estimateError = undefined;
    } catch (e) {
      this.estimate = undefined;
      this.estimateError = readable(e);
    }
  }

  async checkPending(): Promise<void> {
    try {
      const p = await this.engine.pendingCheckpoint();
      // A finished run also leaves its last checkpoint; only an unfinished one is worth offering.
      this.pending = p && p.step < p.totalSteps ? p : null;
    } catch {
      this.pending = null; // best effort: a broken checkpoint store must not block a fresh start
    }
  }

  async start(seqLen: number, template?: TemplateName): Promise<void> {
    if (this.active || Object.keys(this.formErrors).length) return;
    const opts = toTrainOptions(this.form, seqLen);
    this.template = template;
    this.logs = [];
    this.step = 0;
    this.lastCheckpoint = undefined;
    this.deviceLosses = 0;
    this.pending = null;
    this.saved = undefined;
    this.running = opts;
    this.replayUntil = 0;
    await this.run(() => this.engine.train(opts, callback((e: TrainEvent) => this.onEvent(e))));
  }

  /** Continue a paused run, or the run a reload left behind (the model must be loaded first). */
  async resume(): Promise<void> {
    if (this.active) return;
    if (this.pending) {
      this.running = this.pending.options;
      this.template = this.pending.template;
      this.totalSteps = this.pending.totalSteps;
      this.step = this.pending.step;
      this.lastCheckpoint = this.pending.step;
      this.replayUntil = this.pending.step;
      this.logs = [];
      this.pending = null;
    }
    await this.run(() => this.engine.resumeTraining(callback((e: TrainEvent) => this.onEvent(e))));
  }

  async pause(): Promise<void> {
    if (this.phase !== 'running') return;
    this.phase = 'pausing';
    await this.call(() => this.engine.pause());
  }

  async stop(): Promise<void> {
    if (this.phase !== 'running' && this.phase !== 'paused' && this.phase !== 'pausing') return;
    const wasPaused = this.phase === 'paused';
    this.phase = 'stopping';
    await this.call(() => this.engine.stop());
    // A paused run has no loop to report 'stopped'; the engine's stop() ends it directly.
    if (wasPaused && this.phase === 'stopping') this.phase = 'stopped';
  }

  private async run(loop: () => Promise<void>): Promise<void> {
    this.phase = 'running';
    this.error = undefined;
    this.notice = '';
    this.clock.reset();
    try {
      await loop();
      // The loop's last event set the phase; a loop that ended without one still ended.
      if (this.active) this.phase = 'done';
    } catch (e) {
      this.error = readable(e);
      this.phase = 'failed';
      await this.checkPending(); // what survived in IndexedDB can still be resumed
    }
  }

  private async call(f: () => Promise<void>): Promise<void> {
    try {
      await f();
    } catch (e) {
      this.error = readable(e);
    }
  }

  /** Public for tests: the engine's events, in order. */
  onEvent(e: TrainEvent): void {
    switch (e.type) {
      case 'step': {
        this.logs.push(e.log);
        this.step = e.log.step;
        this.totalSteps = e.totalSteps;
        this.gpuBytes = e.gpuBytes;
        if (e.log.step > this.replayUntil) {
          this.clock.mark(e.log.step, performance.now());
          this.eta = this.clock.eta(e.log.step, e.totalSteps);
        }
        break;
      }
      case 'checkpoint':
        this.lastCheckpoint = e.step;
        break;
      case 'paused':
        this.phase = 'paused';
        this.lastCheckpoint = e.step;
        this.step = e.step;
        break;
      case 'device-lost':
        // Steps after the checkpoint are redone by the engine; drop them so the chart does not
        // show them twice, and restart the clock (the new device compiles its shaders again).
        this.deviceLosses++;
        this.logs = this.logs.filter((l) => l.step <= e.resumedFromStep);
        this.step = e.resumedFromStep;
        this.clock.reset();
        this.notice = `The GPU device was lost; training resumed from the checkpoint at step ${e.resumedFromStep}.`;
        break;
      case 'done':
        this.phase = 'done';
        this.step = e.step;
        break;
      case 'stopped':
        this.phase = 'stopped';
        this.step = e.step;
        break;
      case 'saved':
        this.saved = { id: e.id, name: e.name };
        this.onSaved?.();
        break;
    }
  }

  async metricsCsv(): Promise<string> {
    return this.engine.metricsCsv();
  }
}
