// The CLI end to end on the demo model (tiny Llama, genuine Llama 2 tokenizer): train writes a PEFT
// adapter and a JSON log, generate and eval use it, and --init-adapter continues from it.
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { cp, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { main } from './cli.ts';
import { writeFilesAtomic } from './fs-source.ts';

const demo = fileURLToPath(new URL('../../public/models/demo', import.meta.url));
const data = fileURLToPath(new URL('../../public/samples/baking-cups-to-grams.jsonl', import.meta.url));
let tmp: string;
// Two training steps of the demo model on SwiftShader, on two busy cores: about a minute each.
const DIVERGE_TIMEOUT_MS = 300_000;
// Three training steps, a generation and an eval: past 120 s at a load average of 15 on two cores.
const FLOW_TIMEOUT_MS = 400_000;

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '', err = '';
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => ((out += String(s)), true));
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => ((err += String(s)), true));
  const l = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void (out += a.join(' ') + '\n'));
  try {
    return { code: await main(args), out, err };
  } finally {
    o.mockRestore();
    e.mockRestore();
    l.mockRestore();
  }
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'webtune-cli-gpu-'));
});
afterAll(() => rm(tmp, { recursive: true, force: true }));

describe('webtune train / generate / eval', () => {
  test('train writes a PEFT adapter and one log line per step; generate and eval use it', async () => {
    const out = join(tmp, 'adapter'), log = join(tmp, 'log.jsonl');
    const t = await run(['train', '--model', demo, '--data', data, '--out', out, '--seq-len', '32', '--batch', '2',
      '--grad-accum', '1', '--max-steps', '2', '--rank', '4', '--targets', 'q_proj,v_proj', '--log', log]);
    expect(t.code, t.err).toBe(0);
    expect((await readdir(out)).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors', 'webtune-run.json']);
    const record = JSON.parse(await readFile(join(out, 'webtune-run.json'), 'utf8'));
    expect(record.settings.lora).toEqual({ r: 4, alpha: 32, dropout: 0.05, rslora: false, targets: ['q_proj', 'v_proj'] });
    expect(record.settings.train).toMatchObject({ maxSteps: 2, batch: 2, gradAccum: 1 });
    expect(record.settings.seqLen).toBe(32);
    expect(record.dataset.file).toBe('baking-cups-to-grams.jsonl');
    expect(record.options['max-steps']).toBe('2');
    const lines = (await readFile(log, 'utf8')).trim().split('\n').map((s) => JSON.parse(s));
    expect(lines.map((l) => l.step)).toEqual([1, 2]);
    expect(record.history.map((h: { loss: number }) => h.loss)).toEqual(lines.map((l) => l.loss));
    expect(record.final.loss).toBe(lines[1].loss);
    for (const l of lines) for (const k of ['loss', 'lr', 'grad_norm', 'tokens', 'tokens_per_s']) expect(Number.isFinite(l[k]), k).toBe(true);
    expect(t.err).toMatch(/Training \[/);

    const g = await run(['generate', '--model', demo, '--adapter', out, '--prompt', '2 cups of sugar is', '--max-new-tokens', '4']);
    expect(g.code, g.err).toBe(0);
    expect(g.err).toMatch(/4 tokens|end of sequence/);

    // A few held-out rows keep eval quick on SwiftShader (a 32000-token vocabulary per position).
    const small = join(tmp, 'held-out.jsonl');
    await writeFile(small, (await readFile(data, 'utf8')).split('\n').slice(0, 4).join('\n'));
    const e = await run(['eval', '--model', demo, '--adapter', out, '--data', small, '--seq-len', '32', '--json']);
    expect(e.code, e.err).toBe(0);
    const r = JSON.parse(e.out.trim().split('\n').at(-1)!);
    expect(r.tokens).toBeGreaterThan(0);
    expect(r.perplexity).toBeCloseTo(Math.exp(r.loss), 6);

    const c = await run(['train', '--model', demo, '--data', data, '--out', join(tmp, 'adapter2'), '--seq-len', '32',
      '--batch', '2', '--grad-accum', '1', '--max-steps', '1', '--init-adapter', out]);
    expect(c.code, c.err).toBe(0);
    const cfg = JSON.parse(await readFile(join(tmp, 'adapter2', 'adapter_config.json'), 'utf8'));
    expect(cfg.r).toBe(4); // the initial adapter's rank, not the default 8
  }, FLOW_TIMEOUT_MS);

  test('--packing packs short examples into fewer rows, trains them in one step, and records it', async () => {
    // Six very short examples (about 20 tokens each with the seed template) in rows of 64 tokens.
    const short = join(tmp, 'short.jsonl');
    await writeFile(short, ['1 cup', '2 cups', '1/2 cup', '3 cups', '1/4 cup', '2/3 cup']
      .map((c) => JSON.stringify({ instruction: `${c} of sugar?`, response: `${c} is sugar.` })).join('\n'));
    const out = join(tmp, 'packed'), log = join(tmp, 'packed.jsonl');
    const t = await run(['train', '--model', demo, '--data', short, '--out', out, '--seq-len', '64', '--batch', '1',
      '--grad-accum', '1', '--max-steps', '1', '--rank', '2', '--targets', 'q_proj', '--packing', '--log', log]);
    expect(t.code, t.err).toBe(0);
    const m = /Packing: 6 examples in (\d+) rows of up to 64 tokens/.exec(t.err);
    expect(m, t.err).not.toBeNull();
    const rows = Number(m![1]);
    expect(rows).toBeGreaterThan(0);
    expect(rows).toBeLessThan(6);
    // One row of batch 1 holds several examples: more tokens than any one example has (about 20).
    const [step] = (await readFile(log, 'utf8')).trim().split('\n').map((x) => JSON.parse(x));
    expect(step.tokens).toBeGreaterThan(64 / 2);
    expect(step.tokens).toBeLessThanOrEqual(64);
    expect(Number.isFinite(step.loss)).toBe(true);
    const record = JSON.parse(await readFile(join(out, 'webtune-run.json'), 'utf8'));
    expect(record.settings.packing).toBe(true);
  });

  test('--budget refuses a run that does not fit before the dataset is read, with the plan and the nearest flags', async () => {
    const { Gpu } = await import('../gpu/runtime.ts');
    const { checkFit, fitSettings } = await import('../app/fit.ts');
    const { parseModelConfig } = await import('../model/config.ts');
    const { DEFAULT_OPTIONS } = await import('../app/options.ts');
    const { formatBytes } = await import('../errors.ts');
    const g = await Gpu.create();
    const limits = g.limits;
    g.destroy();
    const dims = parseModelConfig(JSON.parse(await readFile(join(demo, 'config.json'), 'utf8')));
    const asked = fitSettings({ ...DEFAULT_OPTIONS, seqLen: 64, batch: 2, gradAccum: 1, storage: 'f32' });
    const ctx = { dims, quant: 'nf4' as const, doubleQuantKnob: true };
    const cheaper = checkFit(ctx, { ...asked, storage: 'f16' }, { budget: Infinity, limits }).peakBytes;
    // A refusal that came after reading the dataset would have printed "Reading ..." first.
    const missing = join(tmp, 'not-read.jsonl');
    await writeFile(missing, '{"text": "x"}\n');
    const out = join(tmp, 'budget-out');
    const t = await run(['train', '--model', demo, '--data', missing, '--out', out, '--seq-len', '64', '--batch', '2', '--grad-accum', '1',
      '--storage', 'f32', '--budget', `${cheaper}B`]);
    expect(t.code).toBe(2);
    expect(t.err).toMatch(/error: demo does not fit: it plans .* of GPU memory at peak and the budget is /);
    expect(t.err).toContain(formatBytes(cheaper));
    expect(t.err).toMatch(/Plan by category: .*weights /);
    expect(t.err).toMatch(/hint: Nearest settings that fit \(.*\): storage f16 \(--storage f16\)\./);
    expect(t.err).not.toMatch(/Reading /);
    expect(await readdir(out)).toEqual([]);
    const bad = await run(['train', '--model', demo, '--data', missing, '--out', out, '--budget', 'lots']);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('--budget must be an amount of memory');
  });

  test('NaN in a base weight is refused at load, naming the tensor', async () => {
    const model = join(tmp, 'nan-model');
    await cp(demo, model, { recursive: true });
    const file = join(model, 'model.safetensors');
    const bytes = await readFile(file);
    const n = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'));
    const name = 'model.layers.1.mlp.down_proj.weight';
    expect(header[name].dtype).toBe('BF16');
    bytes.writeUInt16LE(0x7fc0, 8 + n + header[name].data_offsets[0] + 2 * 5); // element 5 := NaN (BF16)
    await writeFile(file, bytes);
    const t = await run(['train', '--model', model, '--data', data, '--out', join(tmp, 'nan-out'), '--seq-len', '32', '--max-steps', '1']);
    expect(t.code).toBe(2);
    expect(t.err).toContain(`tensor "${name}" holds NaN at index 5`);
    expect(t.err).not.toMatch(/Training \[/);
  });

  test('a diverging run stops with a typed error and leaves the adapter already in --out as it was', async () => {
    const out = join(tmp, 'kept');
    await writeFilesAtomic(out, { 'adapter_config.json': 'the last good config', 'adapter_model.safetensors': 'the last good weights' });
    // An initial adapter of huge but finite values (it passes the load-time finiteness check): the
    // first forward overflows q to Inf, so step 1's loss and gradient norm are NaN. (A learning rate
    // large enough to diverge is refused by the options schema now, which allows lr in (0, 1).)
    const init = join(tmp, 'huge-adapter');
    const { writeSafetensors } = await import('../io/safetensors.ts');
    const tensors: [string, { dtype: 'F32'; shape: number[]; data: Float32Array }][] = [];
    for (let l = 0; l < 2; l++) {
      tensors.push([`base_model.model.model.layers.${l}.self_attn.q_proj.lora_A.weight`, { dtype: 'F32', shape: [2, 64], data: new Float32Array(128).fill(1e19) }]);
      tensors.push([`base_model.model.model.layers.${l}.self_attn.q_proj.lora_B.weight`, { dtype: 'F32', shape: [64, 2], data: new Float32Array(128).fill(1e19) }]);
    }
    await writeFilesAtomic(init, {
      'adapter_config.json': JSON.stringify({ peft_type: 'LORA', r: 2, lora_alpha: 4, target_modules: ['q_proj'], task_type: 'CAUSAL_LM' }),
      'adapter_model.safetensors': writeSafetensors(tensors, { format: 'pt' }),
    });
    // Two short rows, one per step: both train tokens at seq-len 32, and each step is half the work.
    const two = join(tmp, 'two.jsonl');
    await writeFile(two, (await readFile(data, 'utf8')).split('\n').slice(0, 2).join('\n'));
    const t = await run(['train', '--model', demo, '--data', two, '--out', out, '--seq-len', '32', '--batch', '1',
      '--grad-accum', '1', '--max-steps', '2', '--init-adapter', init, '--no-shuffle']);
    expect(t.code).toBe(2);
    expect(t.err).toMatch(/Training diverged at step 1: the loss is NaN/);
    expect(await readFile(join(out, 'adapter_config.json'), 'utf8')).toBe('the last good config');
    expect(await readFile(join(out, 'adapter_model.safetensors'), 'utf8')).toBe('the last good weights');
  }, DIVERGE_TIMEOUT_MS);
});
