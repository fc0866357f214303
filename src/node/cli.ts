// `webtune`: the command-line face of the engine the browser runs. Commands:
//   train, generate, eval, bench, data       (webtune COMMAND --help for each)
// Errors are printed as a message and a hint, never a stack trace, with exit code 2 for bad input.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { appendFileSync, openAsBlob } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { basename, resolve } from 'node:path';
import { UsageError, WebtuneError, formatBytes } from '../errors.ts';
import { adapterFromDir, folderSource, writeFilesAtomic } from './fs-source.ts';
import { parseTargets } from '../model/lora.ts';
import { exportAdapter } from '../model/adapter.ts';
import { checkTrainedTokens, prepareDataset } from '../data/pipeline.ts';
import { TEMPLATE_NAMES, type TemplateName } from '../data/templates.ts';
import type { StepLog } from '../train/trainer.ts';
import { derive, optionFlags, optionUsage, optionsFromFlags, storageFromFlag } from '../app/options.ts';
import { ModelStore } from '../app/model-store.ts';
import { fitSettings, suggestionFlags } from '../app/fit.ts';
import { TrainingRun, loraSpec, trainConfig, trainingRows } from '../app/training-run.ts';
import { dataCommand } from './data-command.ts';
import { modelBench } from './model-bench.ts';
import { checkFreeSpace, checkOutputDir, checkReadableFile, checkWritableFile, fsError, isFsError } from './preflight.ts';
import { runRecordFile } from './run-record.ts';

type Values = Record<string, string | boolean | undefined>;

function args(argv: string[], options: NonNullable<ParseArgsConfig['options']>, usage: string): Values {
  try {
    return parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals: false }).values as Values;
  } catch (e) {
    throw new UsageError((e as Error).message.split('\n')[0], usage);
  }
}

function num(v: Values, key: string, dflt: number, opts: { min?: number; int?: boolean } = {}): number {
  const raw = v[key];
  if (raw === undefined) return dflt;
  // Number('') is 0: an empty value (`--seq-len=`) is refused, not read as zero.
  const n = typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : NaN;
  if (!Number.isFinite(n) || (opts.int && !Number.isInteger(n)) || (opts.min !== undefined && n < opts.min)) {
    throw new UsageError(`--${key} must be ${opts.int ? 'an integer' : 'a number'}${opts.min !== undefined ? ` >= ${opts.min}` : ''}, got "${raw}".`, `Run webtune with --help for the options.`, { field: key });
  }
  return n;
}

const UNITS: Record<string, number> = { '': 1024 ** 3, b: 1, k: 1024, kb: 1024, kib: 1024, m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gb: 1024 ** 3, gib: 1024 ** 3 };

/** "8GiB", "6.5G", "512MiB" or a bare number of GiB: binary units, as formatBytes prints them. */
export function parseBytes(raw: string, flag: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(raw);
  const unit = m ? UNITS[m[2].toLowerCase()] : undefined;
  if (!m || unit === undefined || Number(m[1]) <= 0) {
    throw new UsageError(`${flag} must be an amount of memory, got "${raw}".`, `Give it as e.g. 8GiB, 6.5G or 512MiB (a bare number is GiB).`, { field: flag.slice(2), value: raw });
  }
  return Math.floor(Number(m[1]) * unit);
}

function str(v: Values, key: string, usage: string): string {
  const s = v[key];
  if (typeof s !== 'string' || !s) throw new UsageError(`--${key} is required.`, usage, { field: key });
  return s;
}

function quantOf(v: Values): 'nf4' | 'none' {
  const q = (v.quant as string | undefined) ?? 'nf4';
  if (q !== 'nf4' && q !== 'none') throw new UsageError(`--quant must be nf4 or none, got "${q}".`, 'nf4 = bitsandbytes 4-bit (QLoRA); none = full precision.', { field: 'quant' });
  return q;
}

/** A progress bar on stderr (redrawn in place on a terminal, one line per update otherwise). */
function progress(label: string, done: number, total: number, extra = ''): void {
  const width = 24, filled = Math.round((done / Math.max(1, total)) * width);
  const line = `${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} ${extra}`;
  if (process.stderr.isTTY) process.stderr.write(`\r${line}\x1b[K${done >= total ? '\n' : ''}`);
  else process.stderr.write(line + '\n');
}

function eta(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.round(seconds);
  return s >= 3600 ? `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m` : s >= 60 ? `${Math.floor(s / 60)}m${s % 60}s` : `${s}s`;
}

// ------------------------------------------------------------------------------------------ train

const TRAIN_USAGE = `usage: webtune train --model DIR --data FILE --out DIR [--quant nf4|none] [--double-quant] ${optionUsage(['storage'])}
  [--targets LIST|all-linear] ${optionUsage(['rank', 'alpha', 'dropout', 'rslora', 'lr', 'epochs', 'maxSteps', 'batch', 'gradAccum', 'seqLen'])}
  [--schedule constant|linear|cosine] ${optionUsage(['warmupSteps', 'weightDecay', 'maxGradNorm', 'seed'])}
  [--no-shuffle] [--val-split 0] [--checkpointing] [--packing] [--init-adapter DIR] [--budget GPU-MEMORY, e.g. 8GiB]
  [--template ${TEMPLATE_NAMES.join('|')}] [--encoding latin1|utf-16le|...] [--log FILE]`;

async function train(argv: string[]): Promise<number> {
  const v = args(argv, {
    ...optionFlags(), model: { type: 'string' }, data: { type: 'string' }, out: { type: 'string' }, quant: { type: 'string' },
    'double-quant': { type: 'boolean' }, 'no-shuffle': { type: 'boolean' }, 'val-split': { type: 'string' },
    'init-adapter': { type: 'string' }, template: { type: 'string' }, log: { type: 'string' }, encoding: { type: 'string' },
    budget: { type: 'string' },
  }, TRAIN_USAGE);
  if (v.help) return help(TRAIN_USAGE);
  const modelDir = str(v, 'model', TRAIN_USAGE), dataFile = str(v, 'data', TRAIN_USAGE), out = str(v, 'out', TRAIN_USAGE);
  const template = v.template as TemplateName | undefined;
  if (template && !TEMPLATE_NAMES.includes(template)) throw new UsageError(`Unknown template "${template}".`, `Use one of: ${TEMPLATE_NAMES.join(', ')}.`, { field: 'template' });
  // Every option is checked here, before any file is read: `--alpha 0` fails now, not after training.
  const opts = optionsFromFlags(v);
  const valSplit = num(v, 'val-split', 0, { min: 0 });
  const budget = v.budget === undefined ? undefined : parseBytes(String(v.budget), '--budget');
  // Paths before any work: a bad --out must not surface only after the whole training.
  await checkReadableFile(dataFile, '--data');
  await checkOutputDir(out, '--out');
  if (v.log) await checkWritableFile(v.log as string, '--log');
  const quant = quantOf(v);
  const store = new ModelStore(); // no cache: the folder is on disk already
  const files = await store.read(await folderSource(resolve(modelDir)), quant);
  // With a budget, a run that cannot fit is refused before the dataset is read or a weight loaded,
  // with the plan by category and the nearest flags that fit (src/app/fit.ts).
  const doubleQuant = opts.doubleQuant ?? false;
  const fit = budget === undefined ? undefined : { settings: fitSettings(opts), budget, positionsFollowRun: true, flags: suggestionFlags };
  const loadOpts = { doubleQuant, maxPositions: opts.seqLen, storage: opts.storage, fit };
  try {
    await store.checkFit(files.name, files.config, quant, loadOpts);
  } catch (e) {
    store.gpu?.destroy();
    throw e;
  }
  const init = v['init-adapter'] ? await adapterFromDir(files.config, resolve(v['init-adapter'] as string)) : undefined;
  process.stderr.write(`Reading ${dataFile}...\n`);
  const data = await prepareDataset({ name: basename(dataFile), data: await openAsBlob(resolve(dataFile)) }, files.tokenizer, {
    template, maxLength: opts.seqLen, validation: valSplit, seed: opts.seed, shuffle: false, skipBadRows: true, encoding: v.encoding as string | undefined,
  });
  for (const p of data.problems.slice(0, 20)) process.stderr.write(`  skipped: ${p.file}${p.line ? `:${p.line}` : ''}${p.row ? ` (row ${p.row})` : ''}: ${p.message}\n`);
  if (data.problems.length > 20) process.stderr.write(`  ... and ${data.problems.length - 20} more skipped rows\n`);
  process.stderr.write(`${data.train.length} training and ${data.validation.length} validation examples (${data.shape}, template ${data.template}).\n`);
  const rows = trainingRows(opts, data.train).length, steps = derive(opts, rows);
  if (opts.packing) process.stderr.write(`Packing: ${data.train.length} examples in ${rows} rows of up to ${opts.seqLen} tokens.\n`);
  process.stderr.write(`${steps.totalSteps} optimizer steps of ${steps.effectiveBatch} ${opts.packing ? 'rows' : 'examples'} (batch ${opts.batch} x gradient accumulation ${opts.gradAccum}).\n`);
  const lost = checkTrainedTokens(data.stats, basename(dataFile), opts.seqLen); // throws when nothing would train
  if (lost) process.stderr.write(`warning: ${lost}\n`);
  // Every file is read and checked before the GPU is touched: bad input fails fast and clearly.
  try {
    await store.load(files, quant, (e) => e.phase === 'quantize' && progress('Loading', e.done, e.total), loadOpts);
    const run = await TrainingRun.start(store, opts, data, { datasetFile: basename(dataFile), shuffle: !v['no-shuffle'], init });
    await checkFreeSpace(out, run.model.plan.byCategory().lora ?? 0, '--out'); // a full disk must not cost the run
    process.stderr.write(`GPU memory: ${Object.entries(run.model.plan.byCategory()).map(([k, b]) => `${k} ${formatBytes(b)}`).join(', ')}\n`);
    const log = v.log ? resolve(v.log as string) : undefined;
    if (log) await writeFile(log, '');
    const t0 = performance.now();
    let last: StepLog | undefined;
    const history: StepLog[] = [];
    await run.train((e) => {
      if (e.type !== 'step') return;
      const s = (last = e.log);
      history.push(s);
      // Synchronous, so the lines land in step order while the loop goes on.
      if (log) appendFileSync(log, JSON.stringify({ step: s.step, loss: s.loss, lr: s.lr, grad_norm: s.grad_norm, tokens: s.tokens, tokens_per_s: s.tokens_per_s, ...(s.val_loss !== undefined ? { val_loss: s.val_loss } : {}) }) + '\n');
      const perStep = (performance.now() - t0) / 1000 / s.step;
      progress('Training', s.step, e.totalSteps, `loss ${s.loss.toFixed(4)}${s.val_loss !== undefined ? ` val ${s.val_loss.toFixed(4)}` : ''} ${s.tokens_per_s.toFixed(0)} tok/s ETA ${eta(perStep * (e.totalSteps - s.step))}`);
    });
    await mkdir(resolve(out), { recursive: true });
    const record = await runRecordFile({
      modelDir, folder: files.folder, dataFile, data, lora: init?.spec ?? loraSpec(opts), train: trainConfig(opts, !v['no-shuffle']),
      seqLen: opts.seqLen, valSplit, quant, options: v, totalSteps: run.totalSteps, history,
    });
    await writeFilesAtomic(resolve(out), { ...record, ...(await exportAdapter(run.model.lora!, basename(resolve(modelDir)))) });
    process.stderr.write(`Adapter written to ${out} (${run.totalSteps} steps${last ? `, final loss ${last.loss.toFixed(4)}` : ''}).\n`);
    return 0;
  } finally {
    store.gpu?.destroy();
  }
}

// ------------------------------------------------------------------------------------------- eval

const EVAL_USAGE = 'usage: webtune eval --model DIR [--adapter DIR] [--quant nf4|none] [--double-quant] [--storage f16|f32] --data FILE [--seq-len N] [--batch N] [--template NAME] [--encoding NAME] [--json]';

async function evaluate(argv: string[]): Promise<number> {
  const v = args(argv, {
    model: { type: 'string' }, adapter: { type: 'string' }, quant: { type: 'string' }, 'double-quant': { type: 'boolean' }, storage: { type: 'string' },
    data: { type: 'string' }, 'seq-len': { type: 'string' }, batch: { type: 'string' }, template: { type: 'string' }, json: { type: 'boolean' },
    encoding: { type: 'string' },
  }, EVAL_USAGE);
  if (v.help) return help(EVAL_USAGE);
  const modelDir = str(v, 'model', EVAL_USAGE), dataFile = str(v, 'data', EVAL_USAGE);
  const seqLen = num(v, 'seq-len', 1024, { min: 2, int: true }), batch = num(v, 'batch', 2, { min: 1, int: true });
  const storage = storageFromFlag(v.storage);
  await checkReadableFile(dataFile, '--data');
  const quant = quantOf(v);
  const store = new ModelStore();
  const files = await store.read(await folderSource(resolve(modelDir)), quant);
  const adapter = v.adapter ? await adapterFromDir(files.config, resolve(v.adapter as string)) : undefined;
  const data = await prepareDataset({ name: basename(dataFile), data: await openAsBlob(resolve(dataFile)) }, files.tokenizer, {
    template: v.template as TemplateName | undefined, maxLength: seqLen, shuffle: false, skipBadRows: true, encoding: v.encoding as string | undefined,
  });
  try {
    await store.load(files, quant, (e) => e.phase === 'quantize' && progress('Loading', e.done, e.total), { doubleQuant: Boolean(v['double-quant']), maxPositions: seqLen, storage });
    const r = await TrainingRun.evaluate(store, data.train, { batch, seqLen }, adapter);
    const out = { loss: r.loss, tokens: r.tokens, perplexity: Math.exp(r.loss) };
    if (v.json) console.log(JSON.stringify(out));
    else console.log(`loss ${r.loss.toFixed(6)}  tokens ${r.tokens}  perplexity ${out.perplexity.toFixed(4)}`);
    return 0;
  } finally {
    store.gpu?.destroy();
  }
}

// ------------------------------------------------------------------------------------------ bench

const BENCH_USAGE = 'usage: webtune bench --shape smollm2-135m|qwen2.5-0.5b|qwen3-0.6b|qwen3-1.7b|phi-3.5-mini|gemma-3-270m|gemma-3-1b|llama-3.2-1b|llama-3.2-3b|llama-3-8b|DIR [--seq-len 512] [--batch 1] [--steps N] [--quant nf4|none] [--double-quant] [--storage f32|f16] [--rank 8] [--targets all-linear] [--checkpointing] [--plan-only] [--count]';

async function bench(argv: string[]): Promise<number> {
  const v = args(argv, {
    shape: { type: 'string' }, 'seq-len': { type: 'string' }, batch: { type: 'string' }, steps: { type: 'string' },
    quant: { type: 'string' }, rank: { type: 'string' }, targets: { type: 'string' }, checkpointing: { type: 'boolean' },
    'plan-only': { type: 'boolean' }, count: { type: 'boolean' }, 'double-quant': { type: 'boolean' }, storage: { type: 'string' },
  }, BENCH_USAGE);
  const storage = storageFromFlag(v.storage);
  if (v.help) return help(BENCH_USAGE);
  const result = await modelBench({
    shape: str(v, 'shape', BENCH_USAGE),
    seqLen: num(v, 'seq-len', 512, { min: 2, int: true }),
    batch: num(v, 'batch', 1, { min: 1, int: true }),
    steps: num(v, 'steps', 3, { min: 1, int: true }),
    quant: quantOf(v), doubleQuant: Boolean(v['double-quant']), storage,
    rank: num(v, 'rank', 8, { min: 1, int: true }),
    targets: parseTargets((v.targets as string | undefined) ?? 'all-linear'),
    checkpointing: Boolean(v.checkpointing),
    planOnly: Boolean(v['plan-only']), count: Boolean(v.count),
  });
  console.log(JSON.stringify(result, null, 2));
  return 0;
}

// ------------------------------------------------------------------------------------------- main

const USAGE = `webtune: QLoRA fine-tuning of LLaMA-family models on WebGPU

usage: webtune <command> [options]     (webtune <command> --help for its options)
  train      fine-tune a LoRA adapter on a dataset and write it as PEFT files
  generate   complete a prompt with a model, with or without an adapter
  eval       mean loss and perplexity of a model (and adapter) on a dataset
  bench      training and inference speed and memory for a model shape
  data       check a dataset: format, shape, statistics, rendered examples, problems
  export     an adapter as GGUF for llama.cpp, a merged model folder, or a TRL project
  push       upload an adapter with a model card to the Hugging Face Hub`;

function help(text: string): number {
  console.log(text);
  return 0;
}

/** Every command: one line each. */
const COMMANDS: Record<string, (argv: string[]) => Promise<number>> = {
  train,
  generate: async (argv) => (await import('./generate-command.ts')).generateCommand(argv),
  eval: evaluate,
  bench,
  data: dataCommand,
  export: async (argv) => (await import('./export-command.ts')).exportCommand(argv),
  push: async (argv) => (await import('./push-command.ts')).pushCommand(argv),
};

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    if (cmd === undefined || cmd === '--help' || cmd === '-h' || cmd === 'help') return help(USAGE);
    const command = Object.hasOwn(COMMANDS, cmd) ? COMMANDS[cmd] : undefined;
    if (!command) throw new UsageError(`Unknown command "${cmd}".`, USAGE);
    return await command(rest);
  } catch (caught) {
    const e = isFsError(caught) ? fsError(caught) : caught; // any file-system error names its path
    if (e instanceof WebtuneError) {
      process.stderr.write(`\nerror: ${e.message}\n${e.hint ? `hint: ${e.hint}\n` : ''}`);
      return 2;
    }
    throw e;
  }
}
