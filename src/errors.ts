// Every failure a user can meet is one of these classes. Each carries a stable `code`, a message that
// names the thing that failed (kernel, file, tensor, line) and a `hint` saying what to do about it.
// They cross the worker boundary as plain {name, code, message, hint, details} and are rebuilt into
// the same class on the other side (web-llm loses the class with err.toString(); we do not).

export interface ErrorData {
  name: string;
  code: string;
  message: string;
  hint: string;
  details?: Record<string, unknown>;
}

export class WebtuneError extends Error {
  readonly code: string;
  readonly hint: string;
  readonly details: Record<string, unknown>;
  constructor(code: string, message: string, hint: string, details: Record<string, unknown> = {}) {
    super(message);
    this.name = nameOf(new.target);
    this.code = code;
    this.hint = hint;
    this.details = details;
  }
  toJSON(): ErrorData {
    return { name: this.name, code: this.code, message: this.message, hint: this.hint, details: this.details };
  }
}

/** No WebGPU at all: the browser lacks it, or Node cannot load a driver. */
export class GpuUnavailableError extends WebtuneError {
  constructor(message: string, hint: string) {
    super('gpu-unavailable', message, hint);
  }
}

/** WGSL that did not compile or a pipeline that failed validation; names the kernel. */
export class ShaderCompileError extends WebtuneError {
  constructor(kernel: string, messages: string[]) {
    super(
      'shader-compile',
      `Kernel "${kernel}" failed to compile:\n${messages.join('\n')}`,
      'This is a bug in webtune or an unsupported GPU driver; please report it with the adapter description.',
      { kernel, messages },
    );
  }
}

/** A buffer the device could not give us. Says what was asked and what is already held. */
export class GpuOutOfMemoryError extends WebtuneError {
  constructor(label: string, requested: number, allocated: Record<string, number>, limit?: number) {
    const held = Object.entries(allocated)
      .filter(([, b]) => b > 0)
      .map(([k, b]) => `${k} ${formatBytes(b)}`)
      .join(', ');
    const why = limit !== undefined ? ` (over the device's ${formatBytes(limit)} per-buffer limit)` : '';
    super(
      'gpu-out-of-memory',
      `Could not allocate ${formatBytes(requested)} for "${label}"${why}; already allocated: ${held || 'nothing'}.`,
      'Use a smaller model, a shorter sequence length or batch size, or turn on activation checkpointing.',
      { label, requested, allocated, limit },
    );
  }
}

/** The GPU device was lost (driver reset, tab backgrounded too long, or destroyed on purpose). */
export class DeviceLostError extends WebtuneError {
  constructor(reason: string, message: string) {
    super(
      'device-lost',
      `The GPU device was lost (${reason}): ${message}`,
      'Training can resume from the last checkpoint on a new device. If it keeps happening, the GPU may be out of memory.',
      { reason },
    );
  }
}

/** A kernel needs a WebGPU feature (e.g. shader-f16) the device lacks; callers pick the f32 path. */
export class GpuFeatureMissingError extends WebtuneError {
  constructor(kernel: string, feature: string) {
    super(
      'gpu-feature-missing',
      `Kernel "${kernel}" needs the WebGPU feature "${feature}", which this device does not have.`,
      `Use the f32 path, or a browser and GPU that expose "${feature}".`,
      { kernel, feature },
    );
  }
}

/** A GPU validation error that is not a shader compile failure: always a bug in webtune. */
export class GpuValidationError extends WebtuneError {
  constructor(what: string, message: string) {
    super('gpu-validation', `GPU validation failed in ${what}: ${message}`, 'This is a bug in webtune; please report it.', { what });
  }
}

/** A model folder or file we cannot use: unknown architecture, missing or mis-shaped tensor,
 *  corrupt safetensors, unsupported dtype, a pickle file. `details.file` / `details.tensor` /
 *  `details.field` name the culprit. */
export class ModelFileError extends WebtuneError {
  constructor(message: string, hint: string, details: Record<string, unknown> = {}) {
    super('model-file', message, hint, details);
  }
}

/** A PEFT adapter (adapter_config.json / adapter_model.safetensors) that is malformed or does not
 *  fit the model. */
export class AdapterFileError extends WebtuneError {
  constructor(message: string, hint: string, details: Record<string, unknown> = {}) {
    super('adapter-file', message, hint, details);
  }
}

/** A dataset problem. `details.file`, `details.line` (1-based) and, for CSV, `details.row` say where. */
export class DatasetError extends WebtuneError {
  constructor(message: string, hint: string, details: Record<string, unknown> = {}) {
    super('dataset', message, hint, details);
  }
}

/** Bad command-line or form input (an unknown option, a value out of range). */
export class UsageError extends WebtuneError {
  constructor(message: string, hint: string, details: Record<string, unknown> = {}) {
    super('usage', message, hint, details);
  }
}

/** Browser storage (IndexedDB) is full: a model or checkpoint could not be saved. */
export class StorageQuotaError extends WebtuneError {
  constructor(what: string, details: Record<string, unknown> = {}) {
    super(
      'storage-quota',
      `Not enough browser storage to save ${what}${typeof details.bytes === 'number' ? ` (${formatBytes(details.bytes)})` : ''}.`,
      'Free disk space or delete cached models you no longer need, then try again. The storage panel shows what this site uses and may use.',
      details,
    );
  }
}

/** A file or folder we cannot read or write: missing, a folder where a file belongs (or the reverse),
 *  no permission, a full or read-only disk, a kernel file system. `details.path` names it and
 *  `details.errno` gives the system's code (ENOENT, EACCES, ...). */
export class FileSystemError extends WebtuneError {
  constructor(message: string, hint: string, details: Record<string, unknown> = {}) {
    super('file-system', message, hint, details);
  }
}

/** A training step gave a NaN or infinite loss or gradient norm. Training stops at that step; the
 *  adapter is not written, so whatever was saved before (the output folder, the last checkpoint)
 *  is what remains. */
export class TrainingDivergedError extends WebtuneError {
  constructor(step: number, loss: number, gradNorm: number) {
    super(
      'training-diverged',
      `Training diverged at step ${step}: the loss is ${loss} and the gradient norm ${gradNorm}. Training stopped and no adapter was written.`,
      'Lower the learning rate, keep gradient clipping on (max grad norm 1), or resume from the last checkpoint with a smaller learning rate.',
      { step, loss, gradNorm },
    );
  }
}

/** An upload to the Hugging Face Hub that failed (auth, network, server); nothing was committed. */
export class HubUploadError extends WebtuneError {
  constructor(message: string, hint: string, details: Record<string, unknown> = {}) {
    super('hub-upload', message, hint, details);
  }
}

/** A model and training settings whose memory plan does not fit the device: refused before any
 *  weight is downloaded. `details` holds the plan by category (`byCategory`), the peak, the budget,
 *  and `suggestion` (the nearest settings that fit, with their changes and plan), when one exists. */
export class ModelTooLargeError extends WebtuneError {
  constructor(
    model: string,
    report: { peakBytes: number; byCategory: Record<string, number>; over?: string; largest: { name: string; bytes: number } },
    device: { budget: number; limits: { maxBufferSize: number } },
    suggestion: { settings: object; changes: string[]; report: { peakBytes: number; byCategory: Record<string, number> } } | undefined,
    from: object,
    flags?: (s: never, from: never) => string,
  ) {
    const cats = Object.entries(report.byCategory).filter(([, b]) => b > 0).sort((a, b) => b[1] - a[1]).map(([k, b]) => `${k} ${formatBytes(b)}`).join(', ');
    const why = report.over === 'buffer'
      ? `its largest buffer, ${report.largest.name} (${formatBytes(report.largest.bytes)}), is over this device's ${formatBytes(device.limits.maxBufferSize)} per-buffer limit`
      : report.over === 'positions' ? 'the sequence length is longer than the positions the model is loaded for'
      : `it plans ${formatBytes(report.peakBytes)} of GPU memory at peak and the budget is ${formatBytes(device.budget)}`;
    const fix = suggestion
      ? `Nearest settings that fit (${formatBytes(suggestion.report.peakBytes)}): ${suggestion.changes.join(', ')}${flags ? ` (${flags(suggestion.settings as never, from as never)})` : ''}.`
      : 'No change of storage, checkpointing, batch, rank, targets or sequence length makes it fit: use a smaller model or a device with more memory.';
    super(
      'model-too-large',
      `${model} does not fit: ${why}. Plan by category: ${cats || 'none'}.`,
      fix,
      { model, peakBytes: report.peakBytes, byCategory: report.byCategory, over: report.over, largest: report.largest, budget: device.budget, settings: from,
        ...(suggestion ? { suggestion: { settings: suggestion.settings, changes: suggestion.changes, peakBytes: suggestion.report.peakBytes, byCategory: suggestion.report.byCategory } } : {}) },
    );
  }
}

/**
 * Every error class, by name: the one registry the worker transfer (worker/errors-transfer.ts) and
 * its round-trip test are built from. A class added above must be added here; the test fails until
 * it is (it checks this against the module's exports).
 */
export const ERROR_CLASSES = {
  GpuUnavailableError,
  ShaderCompileError,
  GpuOutOfMemoryError,
  DeviceLostError,
  GpuValidationError,
  GpuFeatureMissingError,
  ModelFileError,
  AdapterFileError,
  DatasetError,
  UsageError,
  StorageQuotaError,
  FileSystemError,
  TrainingDivergedError,
  HubUploadError,
  ModelTooLargeError,
} as const satisfies Record<string, new (...args: never[]) => WebtuneError>;

export type ErrorName = keyof typeof ERROR_CLASSES;

/** The registry's name of a class: a minifier may rename the class itself, never an object key. */
function nameOf(cls: Function): string {
  for (const [name, c] of Object.entries(ERROR_CLASSES)) if (c === cls) return name;
  return cls.name;
}

/** Rebuild an error sent across a worker boundary into its class (unknown names become WebtuneError). */
export function reviveError(data: ErrorData): WebtuneError {
  const cls: Function = Object.hasOwn(ERROR_CLASSES, data.name) ? ERROR_CLASSES[data.name as ErrorName] : WebtuneError;
  const err = Object.create(cls.prototype) as WebtuneError;
  Object.assign(err, { name: data.name, code: data.code, message: data.message, hint: data.hint, details: data.details ?? {} });
  return err;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[u]}`;
}
