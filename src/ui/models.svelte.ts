// Model picking and loading: the three sources (demo, Hugging Face, a dropped folder), the cached
// list, storage figures and the load progress. Owns no GPU state; everything goes through the engine.
import type { CachedModel, LoadEvent, LoadFit, ModelInfo, ModelSource, StorageInfo, WeightForm } from '../worker/api.ts';
import type { FitSettings } from '../app/fit.ts';
import { DEFAULT_MEMORY_BUDGET } from '../app/options.ts';
import { WebtuneError } from '../errors.ts';
import { callback, type Engine } from './engine.ts';
import { readable, type Readable } from './readable.ts';

export type LoadPhase = 'idle' | 'loading' | 'ready' | 'failed' | 'cancelled';

export interface FileProgress {
  file: string;
  loaded: number;
  total: number;
  bytesPerSecond: number;
}

export interface StepProgress {
  label: string;
  done: number;
  total: number;
}

// The token stays in memory (this object, then the worker) unless the user ticks "remember"; only
// then is it written, to this origin's localStorage, and unticking removes it (OWASP's HTML5
// Security Cheat Sheet: anything in localStorage is readable by any script on the origin).
const TOKEN_KEY = 'webtune.hf-token';

function storedToken(): string {
  try {
    return globalThis.localStorage?.getItem(TOKEN_KEY) ?? '';
  } catch {
    return ''; // storage blocked (private mode, sandboxed iframe): nothing remembered
  }
}

/** A model refused because its training run would not fit (the engine's ModelTooLargeError). */
export interface TooLarge {
  byCategory: Record<string, number>;
  peakBytes: number;
  budget: number;
  suggestion?: { settings: FitSettings; changes: string[]; peakBytes: number; byCategory: Record<string, number> };
  /** What was being loaded, to load again with the suggested settings. */
  source: ModelSource;
  name: string;
}

export class Models {
  phase = $state<LoadPhase>('idle');
  /** What is being (or was last) loaded, for the heading of the progress panel. */
  loadingName = $state('');
  files = $state<FileProgress[]>([]);
  quantize = $state<(StepProgress & { tensor: string }) | undefined>();
  cacheWrite = $state<StepProgress | undefined>();
  upload = $state<StepProgress | undefined>();
  /** A download that failed or stalled and is being tried again ("stalled, retrying…"). */
  retry = $state<{ file: string; text: string } | undefined>();
  /** Cancel was pressed for the load in progress. */
  cancelling = $state(false);
  info = $state<ModelInfo | undefined>();
  /** Where the loaded model came from, to load it again in another form. */
  source = $state.raw<ModelSource | undefined>();
  /** The last load was refused before downloading: its plan by category and the nearest settings. */
  tooLarge = $state<TooLarge | undefined>();
  /** GPU memory the site plans for, in GiB (browsers do not tell how much a GPU has). */
  budgetGiB = $state(DEFAULT_MEMORY_BUDGET / 1024 ** 3);
  error = $state<Readable | undefined>();
  cached = $state<CachedModel[]>([]);
  storage = $state<StorageInfo | undefined>();
  storageError = $state<Readable | undefined>();

  hubId = $state('');
  revision = $state('');
  token = $state(storedToken());
  remember = $state(storedToken() !== '');
  quant = $state<'nf4' | 'none'>('nf4');

  constructor(private readonly engine: Engine) {}

  async refresh(): Promise<void> {
    try {
      const [cached, storage] = await Promise.all([this.engine.listCachedModels(), this.engine.storage()]);
      this.cached = cached.sort((a, b) => b.savedAt - a.savedAt);
      this.storage = storage;
      this.storageError = undefined;
    } catch (e) {
      this.storageError = readable(e);
    }
  }

  setRemember(on: boolean): void {
    this.remember = on;
    this.saveToken();
  }

  saveToken(): void {
    try {
      if (this.remember && this.token) localStorage.setItem(TOKEN_KEY, this.token);
      else localStorage.removeItem(TOKEN_KEY);
    } catch {
      // best effort: the token still works for this session
    }
  }

  hubSource(): ModelSource {
    const id = this.hubId.trim();
    return {
      kind: 'hub', id,
      ...(this.revision.trim() ? { revision: this.revision.trim() } : {}),
      ...(this.token.trim() ? { token: this.token.trim() } : {}),
    };
  }

  /** The budget in bytes, or undefined while the field holds no positive number. */
  get budget(): number | undefined {
    return Number.isFinite(this.budgetGiB) && this.budgetGiB > 0 ? Math.floor(this.budgetGiB * 1024 ** 3) : undefined;
  }

  /** Loads a model (in `form`, or a cached entry's own); with `fit`, one whose training run would not
   *  fit is refused before any download. */
  async load(source: ModelSource, name: string, fit?: LoadFit, form?: WeightForm): Promise<ModelInfo | undefined> {
    if (this.phase === 'loading') return undefined;
    this.phase = 'loading';
    this.loadingName = name;
    this.files = [];
    this.quantize = this.cacheWrite = this.upload = undefined;
    this.retry = undefined;
    this.cancelling = false;
    this.error = undefined;
    this.tooLarge = undefined;
    const onEvent = callback((e: LoadEvent) => this.onEvent(e));
    try {
      this.info = await this.engine.loadModel(source, this.quant, onEvent, fit, form);
      this.source = source;
      this.phase = 'ready';
      // Ask once a model is worth keeping; Chrome decides without a prompt, Firefox asks the user.
      if (this.storage && !this.storage.persisted) await this.requestPersistence();
      await this.refresh();
      return this.info;
    } catch (e) {
      // A cancelled load is not a failure: the panel says so and offers the sources again.
      if (this.cancelling) this.phase = 'cancelled';
      else {
        this.error = readable(e);
        this.phase = 'failed';
        if (e instanceof WebtuneError && e.code === 'model-too-large') {
          const d = e.details as Omit<TooLarge, 'source' | 'name'>;
          this.tooLarge = { byCategory: d.byCategory, peakBytes: d.peakBytes, budget: d.budget, suggestion: d.suggestion, source, name };
        }
      }
      this.retry = undefined;
      await this.refresh(); // a half-written model must not show as cached; the list is the engine's
      return undefined;
    }
  }

  /** Stops the load in progress: the engine aborts every request and keeps nothing partial. */
  async cancel(): Promise<void> {
    if (this.phase !== 'loading') return;
    this.cancelling = true;
    await this.engine.cancelLoad();
  }

  private onEvent(e: LoadEvent): void {
    switch (e.phase) {
      case 'retry':
        this.retry = { file: e.file, text: e.stalled ? 'stalled, retrying…' : `${e.reason}; retrying…` };
        break;
      case 'download': {
        if (this.retry?.file === e.file) this.retry = undefined;
        const i = this.files.findIndex((f) => f.file === e.file);
        const row = { file: e.file, loaded: e.loaded, total: e.total, bytesPerSecond: e.bytesPerSecond };
        if (i < 0) this.files.push(row);
        else this.files[i] = row;
        break;
      }
      case 'quantize':
        this.quantize = { label: 'Quantizing to NF4', tensor: e.tensor, done: e.done, total: e.total };
        break;
      case 'cache':
        this.cacheWrite = { label: 'Saving to this browser', done: e.done, total: e.total };
        break;
      case 'upload':
        this.upload = { label: 'Uploading to the GPU', done: e.done, total: e.total };
        break;
    }
  }

  async remove(key: string): Promise<void> {
    try {
      await this.engine.deleteCachedModel(key);
    } catch (e) {
      this.storageError = readable(e);
    }
    await this.refresh();
  }

  async requestPersistence(): Promise<void> {
    try {
      await this.engine.requestPersistence();
      this.storage = await this.engine.storage();
    } catch (e) {
      this.storageError = readable(e);
    }
  }
}
