// Node side of the run record: the dataset file's size and SHA-256 (streamed, so a large dataset is
// never hashed whole in memory) and the record file `webtune train --out` writes beside the adapter.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename, resolve } from 'node:path';
import type { PreparedDataset } from '../data/pipeline.ts';
import { DEFAULT_TOKENIZE } from '../data/tokenize.ts';
import type { ModelFolder } from '../io/model-folder.ts';
import type { LoraSpec } from '../model/lora.ts';
import { selectModules } from '../io/hf-names.ts';
import { parseModelConfig } from '../model/config.ts';
import type { TrainConfig } from '../train/config.ts';
import { RUN_RECORD_FILE, baseIdentity, buildRunRecord, runRecordJson, type RunStep } from '../export/run-record.ts';

export async function fileDigest(path: string): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return { bytes: (await stat(path)).size, sha256: hash.digest('hex') };
}

export interface TrainRunInfo {
  modelDir: string;
  folder: ModelFolder;
  dataFile: string;
  data: PreparedDataset;
  lora: LoraSpec;
  train: TrainConfig;
  seqLen: number;
  valSplit: number;
  quant: 'nf4' | 'none';
  options: Record<string, string | boolean | undefined>;
  totalSteps: number;
  history: readonly RunStep[];
}

/** { 'webtune-run.json': text } for a finished `webtune train`, to write with the adapter files. */
export async function runRecordFile(r: TrainRunInfo): Promise<Record<string, string>> {
  const dir = resolve(r.modelDir), cfg = r.folder.config;
  const { help: _help, ...options } = r.options;
  const record = buildRunRecord({
    base: {
      ...baseIdentity(dir, cfg), folder: dir,
      architecture: typeof cfg.model_type === 'string' ? cfg.model_type : String((cfg.architectures as unknown[] | undefined)?.[0] ?? 'unknown'),
      dtype: typeof cfg.torch_dtype === 'string' ? cfg.torch_dtype : typeof cfg.dtype === 'string' ? cfg.dtype : null,
      quant: r.quant, doubleQuant: Boolean(r.options['double-quant']),
    },
    dataset: {
      file: basename(r.dataFile), ...(await fileDigest(resolve(r.dataFile))), format: r.data.format, shape: r.data.shape,
      template: r.data.template, columns: r.data.columns, rowsRead: r.data.rowsRead, skippedRows: r.data.problems.length,
      trainExamples: r.data.train.length, validationExamples: r.data.validation.length,
    },
    // Targets as the model names its modules (Phi-3: qkv_proj, gate_up_proj), as PEFT needs them.
    lora: { ...r.lora, targets: selectModules(parseModelConfig(cfg), r.lora.targets) }, train: r.train, seqLen: r.seqLen, packing: Boolean(r.options.packing),
    // The CLI prepares data with the tokenizer defaults (TRL's): completion-only and assistant-only loss.
    completionOnlyLoss: DEFAULT_TOKENIZE.completionOnlyLoss, assistantOnlyLoss: DEFAULT_TOKENIZE.assistantOnlyLoss,
    valSplit: r.valSplit, checkpointing: Boolean(r.options.checkpointing),
    initAdapter: typeof r.options['init-adapter'] === 'string' ? resolve(r.options['init-adapter']) : null,
    options, totalSteps: r.totalSteps, history: r.history,
  });
  return { [RUN_RECORD_FILE]: runRecordJson(record) };
}
