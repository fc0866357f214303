// The TRL project export on the demo model and the sample dataset: train.py compiles, the AST check
// finds every setting equal to the run record (and catches a changed one), and the JSONL rows give
// the same tokens through the data pipeline as the run's own data.
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { openAsBlob } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { main } from '../node/cli.ts';
import { loadTokenizerFromDir } from '../node/data-command.ts';
import { directorySources } from '../node/fs-source.ts';
import { runRecordFile } from '../node/run-record.ts';
import { prepareDataset, type PreparedDataset } from '../data/pipeline.ts';
import { openModelFolder } from '../io/model-folder.ts';
import { adapterTensorSpecs, encodeAdapter, loraConfig } from '../io/peft.ts';
import { parseModelConfig } from '../model/config.ts';
import { DEFAULT_TRAIN } from '../train/config.ts';

const demo = fileURLToPath(new URL('../../public/models/demo', import.meta.url));
const sample = fileURLToPath(new URL('../../public/samples/baking-cups-to-grams.jsonl', import.meta.url));
const checker = fileURLToPath(new URL('../../scripts/check-trl-project.py', import.meta.url));
let tmp: string, adapter: string, data: PreparedDataset;

async function run(args: string[]): Promise<{ code: number; err: string }> {
  let err = '';
  const spy = vi.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => ((err += String(s)), true));
  try {
    return { code: await main(args), err };
  } finally {
    spy.mockRestore();
  }
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'webtune-trl-'));
  // What `webtune train --out adapter --rank 4 --targets q_proj,v_proj,down_proj --val-split 3 --seq-len 64
  // --schedule cosine --warmup-steps 2 --max-steps 5 --seed 11 --double-quant` leaves behind.
  adapter = join(tmp, 'adapter');
  await mkdir(adapter);
  const folder = await openModelFolder(await directorySources(demo));
  const cfg = parseModelConfig(folder.config);
  const lora = loraConfig({ r: 4, loraAlpha: 16, loraDropout: 0.1, targetModules: ['q_proj', 'v_proj', 'down_proj'] });
  const weights = new Map(adapterTensorSpecs(cfg, lora).map((s) => [s.key, new Float32Array(s.shape[0] * s.shape[1]).fill(0.01)]));
  for (const [n, b] of Object.entries(encodeAdapter(cfg, lora, weights))) await writeFile(join(adapter, n), b);
  const tok = await loadTokenizerFromDir(demo);
  data = await prepareDataset({ name: 'baking-cups-to-grams.jsonl', data: await openAsBlob(sample) }, tok, { maxLength: 64, validation: 3, shuffle: false, skipBadRows: true });
  const train = { ...DEFAULT_TRAIN, lr: 3e-4, schedule: 'cosine' as const, warmupSteps: 2, maxSteps: 5, seed: 11, weightDecay: 0.01 };
  const options = { model: demo, data: sample, out: adapter, rank: '4', alpha: '16', 'val-split': '3', 'double-quant': true };
  const files = await runRecordFile({
    modelDir: demo, folder, dataFile: sample, data, lora: { rank: 4, alpha: 16, dropout: 0.1, rslora: false, targets: ['q_proj', 'v_proj', 'down_proj'] },
    train, seqLen: 64, valSplit: 3, quant: 'nf4', options, totalSteps: 5,
    history: [1, 2, 3, 4, 5].map((step) => ({ step, epoch: 0, loss: 3 - step / 10, lr: 1e-4, grad_norm: 1, tokens: 100, tokens_per_s: 1 })),
  });
  for (const [n, t] of Object.entries(files)) await writeFile(join(adapter, n), t);
});
afterAll(() => rm(tmp, { recursive: true, force: true }));

describe('webtune export --format trl', () => {
  test('writes the project; train.py compiles and every setting matches the run record', async () => {
    const out = join(tmp, 'project');
    const r = await run(['export', '--model', demo, '--adapter', adapter, '--format', 'trl', '--out', out]);
    expect(r.code, r.err).toBe(0);
    expect((await readdir(out, { recursive: true })).map(String).sort()).toEqual([
      'README.md', 'accelerate', 'accelerate/ddp.yaml', 'accelerate/fsdp.yaml', 'data', 'data/train.jsonl', 'data/validation.jsonl',
      'requirements.txt', 'train.py', 'webtune-run.json',
    ]);
    execFileSync('python3', ['-m', 'py_compile', join(out, 'train.py')]);
    const ok = spawnSync('python3', [checker, out], { encoding: 'utf8' });
    expect(ok.status, ok.stdout + ok.stderr).toBe(0);
    // 5 LoraConfig + 16 SFTConfig + 3 BitsAndBytesConfig settings + BASE_MODEL, REVISION, TEMPLATE.
    expect(ok.stdout).toContain(`ok: 27 settings and ${data.train.length + data.validation.length} rows match`);
    expect(data.validation.length).toBe(3);

    const py = await readFile(join(out, 'train.py'), 'utf8');
    for (const s of ['r=4,', 'lora_alpha=16,', 'lora_dropout=0.1,', 'target_modules=["q_proj", "v_proj", "down_proj"],', 'learning_rate=0.0003,',
      'lr_scheduler_type="cosine",', 'warmup_steps=2,', 'max_steps=5,', 'seed=11,', 'weight_decay=0.01,', 'max_length=64,',
      'bnb_4bit_quant_type="nf4",', 'bnb_4bit_use_double_quant=True,', 'eval_strategy="epoch",', 'SFTTrainer(']) expect(py).toContain(s);
    expect(await readFile(join(out, 'requirements.txt'), 'utf8')).toMatch(/^torch==[\d.]+\ntransformers==[\d.]+\npeft==[\d.]+\ntrl==[\d.]+\nbitsandbytes==[\d.]+\naccelerate==[\d.]+\ndatasets==[\d.]+\n$/);
    expect(await readFile(join(out, 'accelerate/fsdp.yaml'), 'utf8')).toContain('distributed_type: FSDP');
    expect(await readFile(join(out, 'accelerate/ddp.yaml'), 'utf8')).toContain('distributed_type: MULTI_GPU');
    expect(await readFile(join(out, 'README.md'), 'utf8')).toContain('accelerate launch --config_file accelerate/ddp.yaml');

    // The check is not a rubber stamp: a changed learning rate is named.
    await writeFile(join(out, 'train.py'), py.replace('learning_rate=0.0003,', 'learning_rate=0.001,'));
    const bad = spawnSync('python3', [checker, out], { encoding: 'utf8' });
    expect(bad.status).toBe(1);
    expect(bad.stdout).toContain('SFTConfig.learning_rate: train.py has 0.001, the run record says 0.0003');
  });

  test('the JSONL rows give the same tokens and labels as the run', async () => {
    const out = join(tmp, 'project-tokens');
    expect((await run(['export', '--model', demo, '--adapter', adapter, '--format', 'trl', '--out', out])).code).toBe(0);
    const tok = await loadTokenizerFromDir(demo);
    for (const [file, seqs] of [['train.jsonl', data.train], ['validation.jsonl', data.validation]] as const) {
      const again = await prepareDataset({ name: file, data: await openAsBlob(join(out, 'data', file)) }, tok, { maxLength: 64, shuffle: false });
      expect(again.shape).toBe('prompt-completion');
      expect(again.train.map((s) => [...s.input_ids])).toEqual(seqs.map((s) => [...s.input_ids]));
      expect(again.train.map((s) => [...s.labels])).toEqual(seqs.map((s) => [...s.labels]));
    }
  });

  test('a different dataset file or a missing run record is refused by name', async () => {
    const other = join(tmp, 'other.jsonl');
    await writeFile(other, (await readFile(sample, 'utf8')).split('\n').slice(0, 5).join('\n'));
    const r = await run(['export', '--model', demo, '--adapter', adapter, '--format', 'trl', '--out', join(tmp, 'p2'), '--data', other]);
    expect(r.code).toBe(2);
    expect(r.err).toContain('SHA-256');
    const bare = join(tmp, 'bare');
    await mkdir(bare);
    for (const f of ['adapter_config.json', 'adapter_model.safetensors']) await writeFile(join(bare, f), await readFile(join(adapter, f)));
    const m = await run(['export', '--model', demo, '--adapter', bare, '--format', 'trl', '--out', join(tmp, 'p3')]);
    expect(m.code).toBe(2);
    expect(m.err).toContain('webtune-run.json');
    expect((await readdir(tmp)).filter((f) => f.startsWith('p2') || f.startsWith('p3') || f.startsWith('.'))).toEqual([]);
  });
});
