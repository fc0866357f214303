// The way out of the browser: a project that reruns a webtune training run on the standard Python
// stack (transformers + PEFT + bitsandbytes + TRL's SFTTrainer) and scales it to several GPUs with
// accelerate (DDP or FSDP). Every setting comes from the run record (src/export/run-record.ts); the
// data is the run's own rows, already rendered with its template, as TRL-format JSONL:
//   - prompt/completion strings ({"prompt", "completion"}) for instruction and prompt/completion
//     data: TRL tokenizes prompt + completion, masks the prompt (completion_only_loss) and appends
//     EOS, which is exactly what src/data/tokenize.ts does, so the tokens are the same;
//   - {"text"} for plain text; {"messages"} / conversational prompt/completion for chat data, which
//     TRL renders with the tokenizer's chat template as webtune does.
// Host-neutral: returns file contents; the CLI writes them and the site can zip them.
import type { Rendered } from '../data/templates.ts';
import { userTurn } from '../data/templates.ts';
import type { Example } from '../data/shape.ts';
import type { ChatMessage } from '../data/types.ts';
import { RUN_RECORD_FILE, runRecordJson, type RunRecord } from './run-record.ts';

export type TrlRow =
  | { text: string }
  | { prompt: string; completion: string }
  | { prompt: ChatMessage[]; completion: ChatMessage[] }
  | { messages: ChatMessage[] };

/** One usable row of the run as TRL reads it (see the header). */
export function trlRow(ex: Example, r: Rendered): TrlRow {
  if (r.kind === 'completion') return r.prompt === '' ? { text: r.completion } : { prompt: r.prompt, completion: r.completion };
  switch (ex.kind) {
    case 'chat': return { messages: ex.messages };
    case 'prompt-completion-chat': return { prompt: ex.prompt, completion: ex.completion };
    case 'instruction': return { prompt: [{ role: 'user', content: userTurn(ex.instruction, ex.input) }], completion: [{ role: 'assistant', content: ex.response }] };
    case 'prompt-completion': return { prompt: [{ role: 'user', content: ex.prompt }], completion: [{ role: 'assistant', content: ex.completion }] };
    case 'text': return { text: ex.text };
  }
}

export function jsonl(rows: readonly TrlRow[]): string {
  return rows.map((r) => JSON.stringify(r)).join('\n') + (rows.length ? '\n' : '');
}

/** Versions train.py was written against (TRL 0.23's SFTConfig names: max_length, completion_only_loss,
 *  assistant_only_loss). */
export const TRL_REQUIREMENTS: Readonly<Record<string, string>> = {
  torch: '2.8.0', transformers: '4.56.2', peft: '0.17.1', trl: '0.23.0', bitsandbytes: '0.47.0', accelerate: '1.10.1', datasets: '4.1.1',
};

/** Transformers' scheduler names for ours (our "constant" warms up linearly when warmupSteps > 0,
 *  which is transformers' constant_with_warmup; with 0 warm-up steps the two are the same). */
export const HF_SCHEDULER: Readonly<Record<string, string>> = { constant: 'constant_with_warmup', linear: 'linear', cosine: 'cosine' };

type Py = string | number | boolean | null | readonly Py[] | { expr: string };

/** A Python literal (JSON's number and string forms are valid Python; ASCII-escaped strings). */
function py(v: Py): string {
  if (v === null) return 'None';
  if (typeof v === 'boolean') return v ? 'True' : 'False';
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new Error(`cannot write ${v} as a Python literal`);
    return String(v);
  }
  if (typeof v === 'string') return JSON.stringify(v).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  if (Array.isArray(v)) return `[${v.map(py).join(', ')}]`;
  return (v as { expr: string }).expr;
}

function kwargs(indent: string, args: [string, Py][]): string {
  return args.map(([k, v]) => `${indent}${k}=${py(v)},`).join('\n');
}

export interface TrlProjectOptions {
  /** Whether chat rows are in the data (assistant-only loss applies to conversational data only). */
  conversational: boolean;
  hasValidation: boolean;
}

/** The settings train.py passes, by call: what the AST check (scripts/check-trl-project.py) compares
 *  with the run record. */
export function trlSettings(r: RunRecord, o: TrlProjectOptions): { LoraConfig: [string, Py][]; SFTConfig: [string, Py][]; BitsAndBytesConfig: [string, Py][] | null } {
  const s = r.settings, t = s.train;
  return {
    LoraConfig: [
      ['r', s.lora.r], ['lora_alpha', s.lora.alpha], ['lora_dropout', s.lora.dropout], ['target_modules', s.lora.targets],
      ['use_rslora', s.lora.rslora], ['bias', 'none'], ['task_type', 'CAUSAL_LM'],
    ],
    SFTConfig: [
      ['output_dir', 'output'],
      ['learning_rate', t.lr], ['lr_scheduler_type', HF_SCHEDULER[t.schedule] ?? t.schedule], ['warmup_steps', t.warmupSteps],
      ['num_train_epochs', t.epochs], ['max_steps', t.maxSteps ?? -1],
      ['per_device_train_batch_size', t.batch], ['per_device_eval_batch_size', t.batch], ['gradient_accumulation_steps', t.gradAccum],
      ['max_length', s.seqLen], ['packing', s.packing],
      ['completion_only_loss', s.completionOnlyLoss], ['assistant_only_loss', s.assistantOnlyLoss && o.conversational],
      ['seed', t.seed], ['data_seed', t.seed], ['weight_decay', t.weightDecay], ['max_grad_norm', t.maxGradNorm],
      // torch.optim.AdamW with webtune's constants (src/train/step.ts).
      ['optim', 'adamw_torch'], ['adam_beta1', 0.9], ['adam_beta2', 0.999], ['adam_epsilon', 1e-8],
      ['gradient_checkpointing', s.checkpointing],
      ['eval_strategy', o.hasValidation ? 'epoch' : 'no'],
      ['logging_steps', 1], ['save_strategy', 'epoch'], ['report_to', 'none'],
    ],
    BitsAndBytesConfig: r.base.quant === 'nf4'
      ? [
        ['load_in_4bit', true], ['bnb_4bit_quant_type', 'nf4'], ['bnb_4bit_use_double_quant', r.base.doubleQuant],
        // webtune computes in f32; bfloat16 is faster on GPUs that have it, at some cost in fidelity.
        ['bnb_4bit_compute_dtype', { expr: 'torch.float32' }],
        // FSDP shards the 4-bit weights as tensors of this dtype; it must match the other parameters'.
        ['bnb_4bit_quant_storage', { expr: 'torch.float32' }],
      ]
      : null,
  };
}

export function trainPy(r: RunRecord, o: TrlProjectOptions): string {
  const s = trlSettings(r, o);
  const base = r.base.id ?? r.base.folder ?? '';
  const bnb = s.BitsAndBytesConfig
    ? `BitsAndBytesConfig(\n${kwargs('    ', s.BitsAndBytesConfig)}\n)`
    : 'None  # the run trained a full-precision base (--quant none)';
  return `# Reruns the webtune training run recorded in ${RUN_RECORD_FILE} (finished ${r.created}) with
# transformers + PEFT + bitsandbytes + TRL's SFTTrainer. One GPU: python train.py. Several:
#   accelerate launch --config_file accelerate/ddp.yaml train.py    (or accelerate/fsdp.yaml)
# Written by \`webtune export --format trl\`. Dataset: ${r.dataset.file} (${r.dataset.bytes} bytes, SHA-256
# ${r.dataset.sha256}), shape ${r.dataset.shape}, rendered with webtune's "${r.dataset.template}" template into data/*.jsonl.
import os

import torch
from accelerate import PartialState
from datasets import load_dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
from trl import SFTConfig, SFTTrainer

BASE_MODEL = ${py(base)}
REVISION = ${py(r.base.revision)}
TEMPLATE = ${py(r.dataset.template)}  # already applied to data/*.jsonl (chat rows use the tokenizer's chat template)

data_files = {"train": "data/train.jsonl"${o.hasValidation ? ', "validation": "data/validation.jsonl"' : ''}}
dataset = load_dataset("json", data_files=data_files)

quantization_config = ${bnb}

# DDP keeps a whole model per GPU; FSDP (accelerate/fsdp.yaml) places the shards itself.
fsdp = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
model = AutoModelForCausalLM.from_pretrained(
    BASE_MODEL,
    revision=REVISION,
    quantization_config=quantization_config,
    torch_dtype=torch.float32,
    device_map=None if fsdp else {"": PartialState().local_process_index},
)
tokenizer = AutoTokenizer.from_pretrained(BASE_MODEL, revision=REVISION)

peft_config = LoraConfig(
${kwargs('    ', s.LoraConfig)}
)

# The run's batch is per optimizer step on one device. With N GPUs the global batch is
# per_device_train_batch_size * gradient_accumulation_steps * N: divide gradient_accumulation_steps
# by N to keep the run's effective batch.${r.settings.train.shuffle ? '' : '\n# The run did not shuffle (--no-shuffle); the Trainer always shuffles with `seed`.'}
args = SFTConfig(
${kwargs('    ', s.SFTConfig)}
)

trainer = SFTTrainer(
    model=model,
    args=args,
    train_dataset=dataset["train"],
    eval_dataset=${o.hasValidation ? 'dataset["validation"]' : 'None'},
    processing_class=tokenizer,
    peft_config=peft_config,
)
trainer.train()
trainer.save_model("output")
`;
}

export function requirementsTxt(): string {
  return Object.entries(TRL_REQUIREMENTS).map(([k, v]) => `${k}==${v}`).join('\n') + '\n';
}

/** accelerate config files (the format `accelerate config` writes); num_processes is the GPU count. */
export function accelerateConfig(kind: 'ddp' | 'fsdp'): string {
  const common = ['compute_environment: LOCAL_MACHINE', 'machine_rank: 0', 'main_training_function: main', "mixed_precision: 'no'",
    'num_machines: 1', 'num_processes: 2  # the number of GPUs', 'rdzv_backend: static', 'same_network: true', 'use_cpu: false'];
  if (kind === 'ddp') return ['distributed_type: MULTI_GPU', ...common].join('\n') + '\n';
  return [
    'distributed_type: FSDP',
    'fsdp_config:',
    '  fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP',
    '  fsdp_backward_prefetch: BACKWARD_PRE',
    '  fsdp_cpu_ram_efficient_loading: true',
    '  fsdp_forward_prefetch: false',
    '  fsdp_offload_params: false',
    '  fsdp_sharding_strategy: FULL_SHARD',
    '  fsdp_state_dict_type: SHARDED_STATE_DICT',
    '  fsdp_sync_module_states: true',
    '  fsdp_use_orig_params: false',
    ...common,
  ].join('\n') + '\n';
}

export function trlReadme(r: RunRecord, counts: { train: number; validation: number }): string {
  const t = r.settings.train, l = r.settings.lora;
  return `# webtune run, as a TRL project

This folder reruns a webtune fine-tuning run on the standard Python stack and scales it out:
\`train.py\` loads the base model ${r.base.quant === 'nf4' ? `in 4-bit NF4 (bitsandbytes${r.base.doubleQuant ? ', double quantization' : ''})` : 'in full precision'}, adds the same LoRA
adapter (r ${l.r}, alpha ${l.alpha}, dropout ${l.dropout}, ${l.targets.join(', ')}) and trains it with TRL's \`SFTTrainer\` on the
same rows (${counts.train} training${counts.validation ? `, ${counts.validation} validation` : ''}) with the same settings (lr ${t.lr}, ${t.schedule} schedule,
${t.maxSteps ? `${t.maxSteps} steps` : `${t.epochs} epochs`}, batch ${t.batch} x ${t.gradAccum} accumulation, sequence length ${r.settings.seqLen}, seed ${t.seed}).

| file | what |
| --- | --- |
| \`train.py\` | the training script; every setting is a literal in it |
| \`data/train.jsonl\`${counts.validation ? ', `data/validation.jsonl`' : ''} | the run's rows, rendered with webtune's "${r.dataset.template}" template |
| \`requirements.txt\` | pinned versions |
| \`accelerate/ddp.yaml\`, \`accelerate/fsdp.yaml\` | several GPUs: data parallel, or sharded (FSDP) |
| \`${RUN_RECORD_FILE}\` | the run record: options, dataset SHA-256, loss history |

## Run it

\`\`\`sh
python -m venv .venv && . .venv/bin/activate
pip install -r requirements.txt
python train.py                                                   # one GPU
accelerate launch --config_file accelerate/ddp.yaml --num_processes 4 train.py    # 4 GPUs, DDP
accelerate launch --config_file accelerate/fsdp.yaml --num_processes 4 train.py   # 4 GPUs, FSDP
\`\`\`

With N GPUs the global batch is N times the run's: divide \`gradient_accumulation_steps\` by N in
\`train.py\` to keep it. The adapter is saved in \`output/\` as PEFT files, which webtune imports too.
The run ended at loss ${r.final.loss ?? 'n/a'}${r.final.valLoss !== null ? ` (validation ${r.final.valLoss})` : ''} after ${r.final.step} steps.
`;
}

/** Every file of the project, by relative path. */
export function trlProjectFiles(r: RunRecord, rows: { train: readonly TrlRow[]; validation: readonly TrlRow[] }): Record<string, string> {
  const conversational = [...rows.train, ...rows.validation].some((x) => 'messages' in x || ('prompt' in x && Array.isArray(x.prompt)));
  const o = { conversational, hasValidation: rows.validation.length > 0 };
  return {
    'train.py': trainPy(r, o),
    'data/train.jsonl': jsonl(rows.train),
    ...(o.hasValidation ? { 'data/validation.jsonl': jsonl(rows.validation) } : {}),
    'requirements.txt': requirementsTxt(),
    'accelerate/ddp.yaml': accelerateConfig('ddp'),
    'accelerate/fsdp.yaml': accelerateConfig('fsdp'),
    'README.md': trlReadme(r, { train: rows.train.length, validation: rows.validation.length }),
    [RUN_RECORD_FILE]: runRecordJson(r),
  };
}
