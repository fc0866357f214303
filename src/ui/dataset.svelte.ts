// The dataset step: a file in, the engine's summary out (format, shape, template, token statistics,
// a preview with trained tokens marked, skipped rows). Changing an option re-reads the same file.
import type { TemplateName } from '../data/templates.ts';
import { DEFAULT_OPTIONS } from '../app/options.ts';
import type { DatasetSummary } from '../worker/api.ts';
import type { Engine } from './engine.ts';
import { refuseDatasetPickle } from './files.ts';
import { readable, type Readable } from './readable.ts';

export type DatasetPhase = 'idle' | 'reading' | 'ready' | 'failed';

export class Dataset {
  phase = $state<DatasetPhase>('idle');
  file = $state<File | undefined>();
  summary = $state<DatasetSummary | undefined>();
  error = $state<Readable | undefined>();

  template = $state<TemplateName | 'auto'>('auto');
  seqLen = $state(DEFAULT_OPTIONS.seqLen);
  /** Fraction held out for validation loss (the trainer evaluates it at the end of each epoch). */
  validation = $state(0.05);
  skipBadRows = $state(false);
  seed = $state(0);

  constructor(private readonly engine: Engine) {}

  async use(file: File): Promise<void> {
    const refused = refuseDatasetPickle(file.name);
    if (refused) {
      // Keep whatever dataset was already prepared: a wrong drop must not cost the user their data.
      this.error = readable(refused);
      return;
    }
    this.file = file;
    this.skipBadRows = false;
    await this.prepare();
  }

  async prepare(): Promise<void> {
    if (!this.file) return;
    this.phase = 'reading';
    this.error = undefined;
    try {
      this.summary = await this.engine.prepareDataset(this.file, {
        ...(this.template !== 'auto' ? { template: this.template } : {}),
        seqLen: this.seqLen, validation: this.validation, skipBadRows: this.skipBadRows, seed: this.seed,
      });
      this.phase = 'ready';
    } catch (e) {
      this.summary = undefined;
      this.error = readable(e);
      this.phase = 'failed';
    }
  }

  /** The user chose to train on the good rows and leave the listed bad ones out. */
  async skipAndRetry(): Promise<void> {
    this.skipBadRows = true;
    await this.prepare();
  }

  /** Bad rows can be skipped when the engine listed them per row (not when the file is unreadable). */
  get canSkip(): boolean {
    return this.phase === 'failed' && !this.skipBadRows && !!this.error?.problems?.length && this.error.code === 'dataset';
  }
}
