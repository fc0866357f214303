// `webtune`: the command-line face of the engine the browser runs. Commands:
//   train, generate, eval, bench, data       (webtune COMMAND --help for each)
// Errors are printed as a message and a hint, never a stack trace, with exit code 2 for bad input.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { openAsBlob } from 'node:fs';
import { appendFile, mkdir, writeFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { Gpu } from '../gpu/runtime.ts';
import { UsageError, WebtuneError, formatBytes } from '../errors.ts';
import { openModelFolder, type ModelFolder } from '../io/model-folder.ts';
import { directorySources, fileSource, writeFilesAtomic } from './fs-source.ts';
import { openModel } from '../model/open.ts';
import { parseModelConfig } from '../model/config.ts';
import { parseTargets, DEFAULT_LORA, type LoraSpec } from '../model/lora.ts';
import { exportAdapter, importAdapter } from '../model/adapter.ts';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE } from '../io/peft.ts';
import { prepareDataset } from '../data/pipeline.ts';
import { TEMPLATE_NAMES, type TemplateName } from '../data/templates.ts';
import { Trainer, DEFAULT_TRAIN, evaluateLoss, type StepLog } from '../train/trainer.ts';
import { parseSchedule } from '../train/schedule.ts';
import { loadTokenizerFromDir, dataCommand } from './data-command.ts';
import { modelBench } from './model-bench.ts';
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
  const n = Number(raw);
  if (!Number.isFinite(n) || (opts.int && !Number.isInteger(n)) || (opts.min !== undefined && n < opts.min)) {
    throw new UsageError(`--${key} must be ${opts.int ? 'an integer' : 'a number'}${opts.min !== undefined ? ` >= ${opts.min}` : ''}, got "${raw}".`, `Run webtune with --help for the options.`, { field: key });
  }
  return n;
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

async function openFolder(dir: string): Promise<ModelFolder> {
  return openModelFolder(await directorySources(resolve(dir)));
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

const TRAIN_USAGE = `usage: webtune train --model DIR --data FILE --out DIR [--quant nf4|none] [--double-quant]
  [--targets LIST|all-linear] [--rank 8] [--alpha 32] [--dropout 0.05] [--rslora] [--lr 2e-4]
  [--epochs 3] [--max-steps N] [--batch 2] [--grad-accum 4] [--seq-len 1024]
  [--schedule constant|linear|cosine] [--warmup-steps 0] [--weight-decay 0] [--max-grad-norm 1]
  [--seed 0] [--no-shuffle] [--val-split 0] [--checkpointing] [--init-adapter DIR]
  [--template ${TEMPLATE_NAMES.join('|')}] [--log FILE]`;

async function train(argv: string[]): Promise<number> {
  const v = args(argv, {
    model: { type: 'string' }, data: { type: 'string' }, out: { type: 'string' }, quant: { type: 'string' },
    'double-quant': { type: 'boolean' }, targets: { type: 'string' }, rank: { type: 'string' }, alpha: { type: 'string' },
    dropout: { type: 'string' }, rslora: { type: 'boolean' }, lr: { type: 'string' }, epochs: { type: 'string' },
    'max-steps': { type: 'string' }, batch: { type: 'string' }, 'grad-accum': { type: 'string' }, 'seq-len': { type: 'string' },
    schedule: { type: 'string' }, 'warmup-steps': { type: 'string' }, 'weight-decay': { type: 'string' },
    'max-grad-norm': { type: 'string' }, seed: { type: 'string' }, 'no-shuffle': { type: 'boolean' },
    'val-split': { type: 'string' }, checkpointing: { type: 'boolean' }, 'init-adapter': { type: 'string' },
    template: { type: 'string' }, log: { type: 'string' },
  }, TRAIN_USAGE);
  if (v.help) return help(TRAIN_USAGE);
  const modelDir = str(v, 'model', TRAIN_USAGE), dataFile = str(v, 'data', TRAIN_USAGE), out = str(v, 'out', TRAIN_USAGE);
  const template = v.template as TemplateName | undefined;
  if (template && !TEMPLATE_NAMES.includes(template)) throw new UsageError(`Unknown template "${template}".`, `Use one of: ${TEMPLATE_NAMES.join(', ')}.`, { field: 'template' });
  const seqLen = num(v, 'seq-len', 1024, { min: 2, int: true });
  const cfg = {
    ...DEFAULT_TRAIN,
    lr: num(v, 'lr', DEFAULT_TRAIN.lr, { min: 0 }),
    epochs: num(v, 'epochs', DEFAULT_TRAIN.epochs, { min: 1, int: true }),
    maxSteps: v['max-steps'] !== undefined ? num(v, 'max-steps', 0, { min: 1, int: true }) : undefined,
    batch: num(v, 'batch', DEFAULT_TRAIN.batch, { min: 1, int: true }),
    gradAccum: num(v, 'grad-accum', DEFAULT_TRAIN.gradAccum, { min: 1, int: true }),
    schedule: parseSchedule((v.schedule as string | undefined) ?? DEFAULT_TRAIN.schedule),
    warmupSteps: num(v, 'warmup-steps', 0, { min: 0, int: true }),
    weightDecay: num(v, 'weight-decay', 0, { min: 0 }),
    maxGradNorm: num(v, 'max-grad-norm', 1, { min: 0 }),
    seed: num(v, 'seed', 0, { int: true }),
    shuffle: !v['no-shuffle'],
  };
  const valSplit = num(v, 'val-split', 0, { min: 0 });
  const folder = await openFolder(modelDir);
  const tok = await loadTokenizerFromDir(resolve(modelDir));
  let spec: LoraSpec = {
    rank: num(v, 'rank', DEFAULT_LORA.rank, { min: 1, int: true }),
    alpha: num(v, 'alpha', DEFAULT_LORA.alpha, { min: 0 }),
    dropout: num(v, 'dropout', DEFAULT_LORA.dropout, { min: 0 }),
    rslora: Boolean(v.rslora),
    targets: parseTargets((v.targets as string | undefined) ?? DEFAULT_LORA.targets.join(',')),
  };
  if (spec.dropout >= 1) throw new UsageError('--dropout must be below 1.', TRAIN_USAGE, { field: 'dropout' });
  let init: Map<string, Float32Array> | undefined;
  if (v['init-adapter']) {
    const dir = resolve(v['init-adapter'] as string);
    const a = await importAdapter(parseModelConfig(folder.config, folder.configFile),
      await fileSource(join(dir, ADAPTER_CONFIG_FILE)), await fileSource(join(dir, ADAPTER_WEIGHTS_FILE)));
    spec = a.spec; // the adapter's own rank, alpha and targets win: its weights have those shapes
    init = a.weights;
  }
  process.stderr.write(`Reading ${dataFile}...\n`);
  const data = await prepareDataset({ name: basename(dataFile), data: await openAsBlob(resolve(dataFile)) }, tok, {
    template, maxLength: seqLen, validation: valSplit, seed: cfg.seed, shuffle: false, skipBadRows: true,
  });
  for (const p of data.problems.slice(0, 20)) process.stderr.write(`  skipped: ${p.file}${p.line ? `:${p.line}` : ''}${p.row ? ` (row ${p.row})` : ''}: ${p.message}\n`);
  if (data.problems.length > 20) process.stderr.write(`  ... and ${data.problems.length - 20} more skipped rows\n`);
  process.stderr.write(`${data.train.length} training and ${data.validation.length} validation examples (${data.shape}, template ${data.template}).\n`);
  // Every file is read and checked before the GPU is touched: bad input fails fast and clearly.
  const gpu = await Gpu.create();
  try {
    const { model, lora, plan } = await openModel(gpu, folder, {
      quant: quantOf(v), doubleQuant: Boolean(v['double-quant']), batch: cfg.batch, seqLen, lora: spec, training: true,
      checkpointing: Boolean(v.checkpointing), gradAccum: cfg.gradAccum, seed: cfg.seed,
    }, (p) => progress('Loading', p.done, p.total));
    if (init) lora!.load(init);
    process.stderr.write(`GPU memory: ${Object.entries(plan.byCategory()).map(([k, b]) => `${k} ${formatBytes(b)}`).join(', ')}\n`);
    const trainer = new Trainer(model, lora!, data, cfg, tok.padId);
    const log = v.log ? resolve(v.log as string) : undefined;
    if (log) await writeFile(log, '');
    const t0 = performance.now();
    let last: StepLog | undefined;
    const history: StepLog[] = [];
    for await (const s of trainer.run()) {
      last = s;
      history.push(s);
      if (log) await appendFile(log, JSON.stringify({ step: s.step, loss: s.loss, lr: s.lr, grad_norm: s.grad_norm, tokens: s.tokens, tokens_per_s: s.tokens_per_s, ...(s.val_loss !== undefined ? { val_loss: s.val_loss } : {}) }) + '\n');
      const perStep = (performance.now() - t0) / 1000 / s.step;
      progress('Training', s.step, trainer.totalSteps, `loss ${s.loss.toFixed(4)}${s.val_loss !== undefined ? ` val ${s.val_loss.toFixed(4)}` : ''} ${s.tokens_per_s.toFixed(0)} tok/s ETA ${eta(perStep * (trainer.totalSteps - s.step))}`);
    }
    await mkdir(resolve(out), { recursive: true });
    const record = await runRecordFile({ modelDir, folder, dataFile, data, lora: spec, train: cfg, seqLen, valSplit, quant: quantOf(v), options: v, totalSteps: trainer.totalSteps, history });
    await writeFilesAtomic(resolve(out), { ...record, ...(await exportAdapter(lora!, basename(resolve(modelDir)))) });
    process.stderr.write(`Adapter written to ${out} (${trainer.totalSteps} steps${last ? `, final loss ${last.loss.toFixed(4)}` : ''}).\n`);
    return 0;
  } finally {
    gpu.destroy();
  }
}

// ------------------------------------------------------------------------------------------- eval

const EVAL_USAGE = 'usage: webtune eval --model DIR [--adapter DIR] [--quant nf4|none] [--double-quant] --data FILE [--seq-len N] [--batch N] [--template NAME] [--json]';

async function evaluate(argv: string[]): Promise<number> {
  const v = args(argv, {
    model: { type: 'string' }, adapter: { type: 'string' }, quant: { type: 'string' }, 'double-quant': { type: 'boolean' },
    data: { type: 'string' }, 'seq-len': { type: 'string' }, batch: { type: 'string' }, template: { type: 'string' }, json: { type: 'boolean' },
  }, EVAL_USAGE);
  if (v.help) return help(EVAL_USAGE);
  const modelDir = str(v, 'model', EVAL_USAGE), dataFile = str(v, 'data', EVAL_USAGE);
  const seqLen = num(v, 'seq-len', 1024, { min: 2, int: true }), batch = num(v, 'batch', 2, { min: 1, int: true });
  const gpu = await Gpu.create();
  try {
    const folder = await openFolder(modelDir);
    const tok = await loadTokenizerFromDir(resolve(modelDir));
    const config = parseModelConfig(folder.config, folder.configFile);
    const adapter = v.adapter ? await importAdapter(config, await fileSource(join(resolve(v.adapter as string), ADAPTER_CONFIG_FILE)),
      await fileSource(join(resolve(v.adapter as string), ADAPTER_WEIGHTS_FILE))) : undefined;
    const data = await prepareDataset({ name: basename(dataFile), data: await openAsBlob(resolve(dataFile)) }, tok, {
      template: v.template as TemplateName | undefined, maxLength: seqLen, shuffle: false, skipBadRows: true,
    });
    const { model, lora } = await openModel(gpu, folder, { quant: quantOf(v), doubleQuant: Boolean(v['double-quant']), batch, seqLen, lora: adapter?.spec, training: false },
      (p) => progress('Loading', p.done, p.total));
    if (adapter) lora!.load(adapter.weights);
    const r = await evaluateLoss(model, data.train, batch, tok.padId);
    const out = { loss: r.loss, tokens: r.tokens, perplexity: Math.exp(r.loss) };
    if (v.json) console.log(JSON.stringify(out));
    else console.log(`loss ${r.loss.toFixed(6)}  tokens ${r.tokens}  perplexity ${out.perplexity.toFixed(4)}`);
    return 0;
  } finally {
    gpu.destroy();
  }
}

// ------------------------------------------------------------------------------------------ bench

const BENCH_USAGE = 'usage: webtune bench --shape smollm2-135m|qwen2.5-0.5b|llama-3.2-1b|DIR [--seq-len 512] [--batch 1] [--steps N] [--quant nf4|none] [--rank 8] [--targets all-linear] [--checkpointing] [--plan-only]';

async function bench(argv: string[]): Promise<number> {
  const v = args(argv, {
    shape: { type: 'string' }, 'seq-len': { type: 'string' }, batch: { type: 'string' }, steps: { type: 'string' },
    quant: { type: 'string' }, rank: { type: 'string' }, targets: { type: 'string' }, checkpointing: { type: 'boolean' },
    'plan-only': { type: 'boolean' },
  }, BENCH_USAGE);
  if (v.help) return help(BENCH_USAGE);
  const result = await modelBench({
    shape: str(v, 'shape', BENCH_USAGE),
    seqLen: num(v, 'seq-len', 512, { min: 2, int: true }),
    batch: num(v, 'batch', 1, { min: 1, int: true }),
    steps: num(v, 'steps', 3, { min: 1, int: true }),
    quant: quantOf(v),
    rank: num(v, 'rank', 8, { min: 1, int: true }),
    targets: parseTargets((v.targets as string | undefined) ?? 'all-linear'),
    checkpointing: Boolean(v.checkpointing),
    planOnly: Boolean(v['plan-only']),
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

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case 'train': return await train(rest);
      case 'eval': return await evaluate(rest);
      case 'bench': return await bench(rest);
      case 'data': return await dataCommand(rest);
      case 'export': return await (await import('./export-command.ts')).exportCommand(rest);
      case 'push': return await (await import('./push-command.ts')).pushCommand(rest);
      case 'generate': {
        const { generateCommand } = await import('./generate-command.ts');
        return await generateCommand(rest);
      }
      case undefined: case '--help': case '-h': case 'help':
        return help(USAGE);
      default:
        throw new UsageError(`Unknown command "${cmd}".`, USAGE);
    }
  } catch (e) {
    if (e instanceof WebtuneError) {
      process.stderr.write(`\nerror: ${e.message}\n${e.hint ? `hint: ${e.hint}\n` : ''}`);
      return 2;
    }
    throw e;
  }
}
