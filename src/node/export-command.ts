// `webtune export`: a trained PEFT adapter in the formats people run models with.
//   --format gguf    a GGUF LoRA adapter for llama.cpp (`--lora`, `llama-export-lora`)
//   --format merged  the base with the adapter merged in, as a Hugging Face model folder
//   --format trl     a transformers + PEFT + TRL project that reruns the training (webtune-run.json)
// Nothing is half-written: a file goes to a temporary name and is renamed into place; a folder is
// built under a temporary name beside the target and renamed as a whole. An existing --out is
// replaced only with --force.
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';
import { openAsBlob } from 'node:fs';
import { copyFile, mkdir, open, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { AdapterFileError, UsageError } from '../errors.ts';
import { scanDataset } from '../data/pipeline.ts';
import { splitValidation } from '../data/batch.ts';
import type { TemplateName } from '../data/templates.ts';
import { readJsonSource } from '../io/byte-source.ts';
import { RUN_RECORD_FILE, parseRunRecord } from '../export/run-record.ts';
import { trlProjectFiles, trlRow, type TrlRow } from '../export/trl.ts';
import { loadTokenizerFromDir } from './data-command.ts';
import { fileDigest } from './run-record.ts';
import { openModelFolder, type ModelFolder } from '../io/model-folder.ts';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, readAdapter, type LoadedAdapter } from '../io/peft.ts';
import { parseModelConfig, type ModelConfig } from '../model/config.ts';
import { adapterToGguf } from '../export/gguf-lora.ts';
import { DEFAULT_MAX_SHARD_SIZE, writeMergedWeights, type FileSink } from '../export/merge.ts';
import { directorySources, fileSource, writeFileAtomic } from './fs-source.ts';

const FORMATS = ['gguf', 'merged', 'trl'] as const;
type Format = (typeof FORMATS)[number];

const USAGE = `usage: webtune export --model DIR --adapter DIR --format ${FORMATS.join('|')} --out PATH [--force]
  gguf:   --out FILE.gguf [--type f32|f16]      LoRA adapter for llama.cpp (--lora, llama-export-lora)
  merged: --out DIR [--from-nf4 [--double-quant]] [--max-shard-size 2GB]
          Hugging Face model folder in the base's dtype; --from-nf4 merges into the NF4-dequantized
          base the QLoRA run trained against
  trl:    --out DIR [--data FILE]               train.py (transformers + PEFT + bitsandbytes + TRL),
          the run's rows as JSONL, requirements.txt, accelerate configs (DDP, FSDP), README;
          needs the adapter's webtune-run.json; --data defaults to the file the run used`;

type Values = Record<string, string | boolean | undefined>;

export interface ExportInputs {
  modelDir: string;
  folder: ModelFolder;
  config: ModelConfig;
  adapterDir: string;
  adapter: LoadedAdapter;
}

export async function exportCommand(argv: string[]): Promise<number> {
  let v: Values;
  try {
    v = parseArgs({
      args: argv, strict: true, allowPositionals: false,
      options: {
        model: { type: 'string' }, adapter: { type: 'string' }, format: { type: 'string' }, out: { type: 'string' },
        type: { type: 'string' }, force: { type: 'boolean' }, 'from-nf4': { type: 'boolean' }, 'double-quant': { type: 'boolean' },
        'max-shard-size': { type: 'string' }, data: { type: 'string' }, help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (e) {
    throw new UsageError((e as Error).message.split('\n')[0], USAGE);
  }
  if (v.help) {
    console.log(USAGE);
    return 0;
  }
  for (const k of ['model', 'adapter', 'format', 'out']) {
    if (typeof v[k] !== 'string' || !v[k]) throw new UsageError(`--${k} is required.`, USAGE, { field: k });
  }
  const format = v.format as Format;
  if (!FORMATS.includes(format)) throw new UsageError(`Unknown export format "${format}".`, `Use one of: ${FORMATS.join(', ')}.`, { field: 'format' });
  const out = resolve(v.out as string);
  await refuseExisting(out, Boolean(v.force), format === 'gguf' ? 'file' : 'folder');
  const inputs = await readInputs(v.model as string, v.adapter as string);

  switch (format) {
    case 'gguf': {
      const type = ((v.type as string | undefined) ?? 'f32').toUpperCase();
      if (type !== 'F32' && type !== 'F16') throw new UsageError(`--type must be f32 or f16, got "${v.type}".`, USAGE, { field: 'type' });
      const bytes = adapterToGguf(inputs.config, inputs.adapter.config, inputs.adapter.specs, inputs.adapter.weights, { type, name: basename(inputs.adapterDir) });
      await writeFileAtomic(out, bytes);
      process.stderr.write(`GGUF LoRA adapter written to ${out} (${inputs.adapter.specs.length} tensors, ${bytes.length} bytes).\n`);
      return 0;
    }
    case 'merged': {
      if (v['double-quant'] && !v['from-nf4']) throw new UsageError('--double-quant only applies with --from-nf4.', USAGE, { field: 'double-quant' });
      const maxShardSize = v['max-shard-size'] ? parseSize(v['max-shard-size'] as string) : DEFAULT_MAX_SHARD_SIZE;
      let result: Awaited<ReturnType<typeof writeMergedWeights>> | undefined;
      await writeFolderAtomic(out, async (dir) => {
        result = await writeMergedWeights(inputs.folder, inputs.config, inputs.adapter, (name) => fileSink(join(dir, name)), {
          fromNf4: Boolean(v['from-nf4']), doubleQuant: Boolean(v['double-quant']), maxShardSize,
        });
        for (const f of await sideFiles(inputs.modelDir)) await copyFile(join(inputs.modelDir, f), join(dir, f));
      });
      process.stderr.write(`Merged model written to ${out} (${result!.merged.length} tensors changed, ${result!.files.join(', ')}).\n`);
      return 0;
    }
    case 'trl': {
      const files = await trlProject(inputs, v.data as string | undefined);
      await writeFolderAtomic(out, async (dir) => {
        for (const [name, text] of Object.entries(files)) {
          await mkdir(dirname(join(dir, name)), { recursive: true });
          await writeFile(join(dir, name), text);
        }
      });
      process.stderr.write(`TRL project written to ${out}: run it with \`accelerate launch --config_file accelerate/ddp.yaml train.py\` (see README.md).\n`);
      return 0;
    }
  }
}

/** The project's files: the run record next to the adapter, and the run's rows re-read from the
 *  dataset (checked against the record's SHA-256) and split as the run split them. */
async function trlProject(inputs: ExportInputs, dataArg: string | undefined): Promise<Record<string, string>> {
  const recordFile = join(inputs.adapterDir, RUN_RECORD_FILE);
  const record = parseRunRecord(await readJsonSource(await fileSource(recordFile).catch(() => {
    throw new AdapterFileError(`${recordFile} is missing: the TRL export rebuilds the run from it.`, 'Train with `webtune train --out DIR`, which writes it beside the adapter.', { file: recordFile });
  }), (m, h, d) => new AdapterFileError(m, h, d)), recordFile);
  const given = dataArg ?? (typeof record.options.data === 'string' ? record.options.data : undefined);
  if (!given) throw new UsageError('--data is required: the run record does not say where the dataset was.', USAGE, { field: 'data' });
  const dataFile = resolve(given);
  const digest = await fileDigest(dataFile).catch(() => {
    throw new UsageError(`Cannot read the dataset ${dataFile}.`, `Pass the file the run trained on (${record.dataset.file}) with --data.`, { field: 'data', file: dataFile });
  });
  if (digest.sha256 !== record.dataset.sha256) {
    throw new UsageError(`${dataFile} is not the dataset of this run: its SHA-256 is ${digest.sha256}, the run record says ${record.dataset.sha256} (${record.dataset.file}).`,
      'Pass the exact file the run trained on with --data.', { field: 'data', file: dataFile });
  }
  const tok = await loadTokenizerFromDir(inputs.modelDir);
  const rows: TrlRow[] = [];
  // Only the rows are kept: the tokenized examples are not needed here.
  await scanDataset({ name: record.dataset.file, data: await openAsBlob(dataFile) }, tok, {
    template: record.dataset.template as TemplateName, maxLength: record.settings.seqLen, shuffle: false, skipBadRows: true,
    onExample: (ex, rendered) => rows.push(trlRow(ex, rendered)),
  }, () => {});
  // The CLI prepares without shuffling and splits the validation rows off the end (webtune train).
  const split = splitValidation(rows, record.settings.valSplit);
  if (split.train.length !== record.dataset.trainExamples || split.validation.length !== record.dataset.validationExamples) {
    throw new UsageError(`The dataset gives ${split.train.length} training and ${split.validation.length} validation rows, the run had ${record.dataset.trainExamples} and ${record.dataset.validationExamples}.`,
      'The model folder\'s tokenizer differs from the run\'s; use the same --model.', { field: 'model' });
  }
  return trlProjectFiles(record, split);
}

/** Files of a model folder that a merged copy keeps as they are: the config and the tokenizer. */
const SIDE_FILES = new Set([
  'config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'tokenizer.model',
  'vocab.json', 'merges.txt', 'added_tokens.json', 'chat_template.jinja', 'chat_template.json',
]);

async function sideFiles(dir: string): Promise<string[]> {
  return (await readdir(dir, { withFileTypes: true })).filter((e) => (e.isFile() || e.isSymbolicLink()) && SIDE_FILES.has(e.name)).map((e) => e.name).sort();
}

/** "2GB", "500MB", "64KB" or bytes; decimal units, as huggingface_hub's parse_size_to_int. */
function parseSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB)?$/i.exec(s.trim());
  const n = m ? Math.floor(Number(m[1]) * 1000 ** ['B', 'KB', 'MB', 'GB', 'TB'].indexOf((m[2] ?? 'B').toUpperCase())) : NaN;
  if (!(n > 0)) throw new UsageError(`--max-shard-size must be a size such as 2GB or 500MB, got "${s}".`, USAGE, { field: 'max-shard-size' });
  return n;
}

/** A file written front to back, synced before it is closed. */
async function fileSink(path: string): Promise<FileSink> {
  const fh = await open(path, 'w');
  return {
    async write(chunk) {
      let done = 0;
      while (done < chunk.length) done += (await fh.write(chunk, done, chunk.length - done)).bytesWritten;
    },
    async close() {
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
    },
  };
}

/** The base folder and the adapter, read and checked against each other (io/peft.ts names any
 *  tensor or setting that does not fit the base). */
export async function readInputs(modelDir: string, adapterDir: string): Promise<ExportInputs> {
  const folder = await openModelFolder(await directorySources(resolve(modelDir)));
  const config = parseModelConfig(folder.config, folder.configFile);
  const dir = resolve(adapterDir);
  const adapter = await readAdapter(config, await fileSource(join(dir, ADAPTER_CONFIG_FILE)), await fileSource(join(dir, ADAPTER_WEIGHTS_FILE)));
  return { modelDir: resolve(modelDir), folder, config, adapterDir: dir, adapter };
}

async function refuseExisting(out: string, force: boolean, kind: 'file' | 'folder'): Promise<void> {
  const st = await stat(out).catch(() => null);
  if (st && !force) {
    throw new UsageError(`${out} already exists.`, 'Choose another --out, or add --force to replace it.', { field: 'out', file: out });
  }
  if (st?.isDirectory() && kind === 'file') {
    throw new UsageError(`${out} is a folder; this format writes a single file.`, 'Give a file name such as adapter.gguf.', { field: 'out', file: out });
  }
}

/** Builds a folder under a temporary name next to `out`, then swaps it into place: a failure at any
 *  point leaves `out` as it was (absent, or the old folder with --force). */
export async function writeFolderAtomic(out: string, fill: (dir: string) => Promise<void>): Promise<void> {
  const tag = `${process.pid}-${randomBytes(4).toString('hex')}`;
  const tmp = join(dirname(out), `.${basename(out)}.tmp-${tag}`);
  const old = join(dirname(out), `.${basename(out)}.old-${tag}`);
  await mkdir(tmp, { recursive: true });
  try {
    await fill(tmp);
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
  const had = await stat(out).then(() => true, () => false);
  if (had) await rename(out, old);
  try {
    await rename(tmp, out);
  } catch (e) {
    if (had) await rename(old, out);
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
  if (had) await rm(old, { recursive: true, force: true });
}
