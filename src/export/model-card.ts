// The model card (README.md) uploaded with an adapter: YAML metadata the Hub reads (base_model,
// library_name: peft, pipeline_tag, tags; the Hub links the adapter to its base through base_model
// and the base_model:adapter:<id> tag, as PEFT's own cards do), then the training data, the
// hyperparameters and the loss curve from the run record. Host-neutral text.
import type { LoraConfig } from '../io/peft.ts';
import { HF_SCHEDULER } from './trl.ts';
import type { RunRecord, RunStep } from './run-record.ts';

export const LOSS_CURVE_FILE = 'loss.svg';

/** A YAML scalar: plain when unambiguous, else double-quoted (JSON strings are valid YAML). */
function yaml(s: string): string {
  return /^[A-Za-z0-9_./:-]+$/.test(s) && !/^(true|false|null|yes|no|on|off|~|\d.*)$/i.test(s) ? s : JSON.stringify(s);
}

/** Markdown table cell: pipes and line breaks escaped. */
function cell(s: string | number | boolean | null): string {
  return String(s ?? '').replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

export interface ModelCardInput {
  repo: string;
  config: LoraConfig;
  record: RunRecord | null;
  /** Whether a merged model is uploaded under merged/. */
  merged: boolean;
}

export function modelCard({ repo, config, record, merged }: ModelCardInput): string {
  const base = record?.base.id ?? config.baseModelNameOrPath ?? null;
  const hubBase = base && /^[\w.-]+\/[\w.-]+$/.test(base) ? base : null;
  const meta = [
    '---',
    ...(hubBase ? [`base_model: ${yaml(hubBase)}`] : []),
    'library_name: peft',
    'pipeline_tag: text-generation',
    'tags:',
    ...(hubBase ? [`- ${yaml(`base_model:adapter:${hubBase}`)}`] : []),
    '- lora',
    '- sft',
    ...(record?.base.quant === 'nf4' ? ['- qlora'] : []),
    '- webtune',
    '---',
  ];
  const lines: string[] = [...meta, '', `# ${repo.split('/').at(-1)}`, ''];
  lines.push(`A LoRA adapter${hubBase ? ` for [${hubBase}](https://huggingface.co/${hubBase})` : base ? ` for ${base}` : ''}, fine-tuned in the browser with webtune${record?.base.quant === 'nf4' ? ' (QLoRA: the base quantized to 4-bit NF4 as bitsandbytes does)' : ''}.`);
  if (merged) lines.push('', 'The base with the adapter merged in is in `merged/` (a full model folder).');
  lines.push('', '## Use it', '', '```python', 'from peft import AutoPeftModelForCausalLM', '', `model = AutoPeftModelForCausalLM.from_pretrained(${JSON.stringify(repo)})`, '```');
  if (record) {
    const d = record.dataset, s = record.settings, t = s.train;
    lines.push('', '## Training data', '', '| | |', '| --- | --- |',
      `| file | ${cell(d.file)} (${d.bytes} bytes) |`, `| SHA-256 | \`${d.sha256}\` |`, `| format, shape | ${cell(d.format)}, ${cell(d.shape)} |`,
      `| template | ${cell(d.template)} |`, `| rows | ${d.rowsRead} read, ${d.skippedRows} skipped, ${d.trainExamples} training, ${d.validationExamples} validation |`);
    lines.push('', '## Hyperparameters', '', '| | |', '| --- | --- |',
      `| LoRA | r ${s.lora.r}, alpha ${s.lora.alpha}, dropout ${s.lora.dropout}${s.lora.rslora ? ', rsLoRA' : ''} |`,
      `| targets | ${s.lora.targets.join(', ')} |`,
      `| base | ${record.base.quant === 'nf4' ? `NF4${record.base.doubleQuant ? ' with double quantization' : ''}` : 'full precision'} |`,
      `| learning rate | ${t.lr}, ${HF_SCHEDULER[t.schedule] ?? t.schedule} schedule, ${t.warmupSteps} warm-up steps |`,
      `| steps | ${record.totalSteps} (${t.maxSteps ? `max_steps ${t.maxSteps}` : `${t.epochs} epochs`}) |`,
      `| batch | ${t.batch} x ${t.gradAccum} gradient accumulation |`,
      `| sequence length | ${s.seqLen}${s.packing ? ', packed' : ''} |`,
      `| loss | ${s.completionOnlyLoss ? 'completion only' : 'every token'}${s.assistantOnlyLoss ? ' (assistant turns only for chat)' : ''} |`,
      `| optimizer | AdamW, weight decay ${t.weightDecay}, gradient clipping ${t.maxGradNorm} |`,
      `| seed | ${t.seed} |`);
    lines.push('', '## Loss', '');
    if (record.history.length) {
      lines.push(`![training loss](${LOSS_CURVE_FILE})`, '', `Final training loss ${record.final.loss}${record.final.valLoss !== null ? `, validation loss ${record.final.valLoss}` : ''} after ${record.final.step} steps.`, '',
        '| step | loss | validation |', '| ---: | ---: | ---: |',
        ...sampleSteps(record.history, 20).map((h) => `| ${h.step} | ${h.loss.toFixed(4)} | ${h.val_loss !== undefined ? h.val_loss.toFixed(4) : ''} |`));
    } else lines.push('No optimizer steps were recorded.');
  }
  return lines.join('\n') + '\n';
}

/** At most `n` steps, evenly spread, always with the first and the last, and every validation step. */
function sampleSteps(h: readonly RunStep[], n: number): RunStep[] {
  if (h.length <= n) return [...h];
  const keep = new Set<number>();
  for (let i = 0; i < n; i++) keep.add(Math.round((i * (h.length - 1)) / (n - 1)));
  h.forEach((s, i) => s.val_loss !== undefined && keep.add(i));
  return [...keep].sort((a, b) => a - b).map((i) => h[i]);
}

/** The loss curve as a small standalone SVG (training loss line, validation points). */
export function lossCurveSvg(h: readonly RunStep[], width = 480, height = 240): string {
  const pad = 40;
  const losses = h.flatMap((s) => (s.val_loss !== undefined ? [s.loss, s.val_loss] : [s.loss])).filter(Number.isFinite);
  const lo = Math.min(...losses), hi = Math.max(...losses), span = hi - lo || 1;
  const maxStep = Math.max(1, ...h.map((s) => s.step));
  const x = (step: number) => (pad + ((width - 2 * pad) * step) / maxStep).toFixed(1);
  const y = (loss: number) => (height - pad - ((height - 2 * pad) * (loss - lo)) / span).toFixed(1);
  const line = h.filter((s) => Number.isFinite(s.loss)).map((s) => `${x(s.step)},${y(s.loss)}`).join(' ');
  const val = h.filter((s) => s.val_loss !== undefined).map((s) => `<circle cx="${x(s.step)}" cy="${y(s.val_loss!)}" r="3" fill="#d62728"/>`).join('');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">` +
    `<rect width="${width}" height="${height}" fill="white"/>` +
    `<line x1="${pad}" y1="${height - pad}" x2="${width - pad}" y2="${height - pad}" stroke="#888"/><line x1="${pad}" y1="${pad}" x2="${pad}" y2="${height - pad}" stroke="#888"/>` +
    `<text x="${pad}" y="${pad - 8}">loss ${hi.toFixed(3)}</text><text x="${pad}" y="${height - pad + 14}">${lo.toFixed(3)}</text>` +
    `<text x="${width - pad}" y="${height - pad + 14}" text-anchor="end">step ${maxStep}</text>` +
    `<polyline points="${line}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>${val}</svg>\n`;
}
