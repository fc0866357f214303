// Bad input at the command line: each case exits with code 2 and a message naming the file, tensor
// or field, before any GPU work starts (so these run in the unit tier).
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { spawnSync } from 'node:child_process';
import { chmod, copyFile, mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { main } from './cli.ts';

const fixtures = fileURLToPath(new URL('../../fixtures/models/', import.meta.url));
const demo = fileURLToPath(new URL('../../public/models/demo/', import.meta.url));
const samples = fileURLToPath(new URL('../../public/samples/', import.meta.url));
const bin = fileURLToPath(new URL('../../bin/webtune.mjs', import.meta.url));
let tmp: string;

/** A copy of tiny-llama with the demo model's tokenizer files, then `edit` applied. */
async function modelDir(name: string, edit: (dir: string) => Promise<void> = async () => {}): Promise<string> {
  const dir = join(tmp, name);
  await mkdir(dir, { recursive: true });
  for (const f of ['config.json', 'model.safetensors']) await copyFile(join(fixtures, 'tiny-llama', f), join(dir, f));
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) await copyFile(join(demo, f), join(dir, f));
  await edit(dir);
  return dir;
}

async function run(args: string[]): Promise<{ code: number; err: string }> {
  let err = '';
  const spy = vi.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => {
    err += String(s);
    return true;
  });
  try {
    return { code: await main(args), err };
  } finally {
    spy.mockRestore();
  }
}

const train = (model: string, extra: string[] = []) =>
  run(['train', '--model', model, '--data', join(samples, 'baking-cups-to-grams.jsonl'), '--out', join(tmp, 'out'), ...extra]);

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'webtune-cli-'));
});
afterAll(() => rm(tmp, { recursive: true, force: true }));

describe('webtune CLI refuses bad input with a typed, named error', () => {
  test('unknown architecture lists the supported ones', async () => {
    const dir = await modelDir('gpt2', async (d) => {
      const cfg = JSON.parse(await readFile(join(d, 'config.json'), 'utf8'));
      await writeFile(join(d, 'config.json'), JSON.stringify({ ...cfg, architectures: ['GPT2LMHeadModel'], model_type: 'gpt2' }));
    });
    const r = await train(dir);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/GPT2LMHeadModel|gpt2/);
    expect(r.err).toMatch(/LlamaForCausalLM/);
  });

  test('a folder with only PyTorch pickle weights is refused with the reason', async () => {
    const dir = await modelDir('pickle', async (d) => {
      await rm(join(d, 'model.safetensors'));
      await writeFile(join(d, 'pytorch_model.bin'), new Uint8Array([0x50, 0x4b, 3, 4, 0, 0]));
    });
    const r = await train(dir);
    expect(r.code).toBe(2);
    expect(r.err).toContain('pytorch_model.bin');
    expect(r.err).toMatch(/pickle/i);
    expect(r.err).toMatch(/code/);
  });

  test('a truncated safetensors file names the file', async () => {
    const dir = await modelDir('truncated', async (d) => {
      const bytes = await readFile(join(d, 'model.safetensors'));
      await writeFile(join(d, 'model.safetensors'), bytes.subarray(0, bytes.length - 1000));
    });
    const r = await train(dir);
    expect(r.code).toBe(2);
    expect(r.err).toContain('model.safetensors');
  });

  test('a header length over 100 MB is refused before anything is read', async () => {
    const dir = await modelDir('huge-header', async (d) => {
      const b = new Uint8Array(16);
      new DataView(b.buffer).setBigUint64(0, 200_000_000n, true);
      await writeFile(join(d, 'model.safetensors'), b);
    });
    const r = await train(dir);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/header/i);
  });

  test('an adapter whose shapes do not fit the model names the tensor', async () => {
    const dir = await modelDir('adapter-base');
    // A PEFT adapter made for a wider model: lora_A has 128 input features, tiny-llama has 64.
    const ad = join(tmp, 'bad-adapter');
    await mkdir(ad, { recursive: true });
    await writeFile(join(ad, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r: 2, lora_alpha: 4, target_modules: ['q_proj'], task_type: 'CAUSAL_LM' }));
    const { writeSafetensors } = await import('../io/safetensors.ts');
    const tensors: [string, { dtype: 'F32'; shape: number[]; data: Float32Array }][] = [];
    for (let l = 0; l < 2; l++) {
      tensors.push([`base_model.model.model.layers.${l}.self_attn.q_proj.lora_A.weight`, { dtype: 'F32', shape: [2, 128], data: new Float32Array(256) }]);
      tensors.push([`base_model.model.model.layers.${l}.self_attn.q_proj.lora_B.weight`, { dtype: 'F32', shape: [64, 2], data: new Float32Array(128) }]);
    }
    await writeFile(join(ad, 'adapter_model.safetensors'), writeSafetensors(tensors, { format: 'pt' }));
    const r = await train(dir, ['--init-adapter', ad]);
    expect(r.code).toBe(2);
    expect(r.err).toContain('lora_A');
  });

  test('an unknown option or a bad value is a usage error', async () => {
    expect((await run(['train', '--frobnicate'])).code).toBe(2);
    const r = await train(await modelDir('opts'), ['--rank', 'many']);
    expect(r.code).toBe(2);
    expect(r.err).toContain('--rank');
  });

  test('--packing is listed in train --help, takes no value, and is checked before the model is read', async () => {
    let printed = '';
    const log = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void (printed += a.join(' ')));
    try {
      expect((await run(['train', '--help'])).code).toBe(0);
    } finally {
      log.mockRestore();
    }
    expect(printed).toContain('[--packing]');
    const v = await train(join(tmp, 'no-such-model'), ['--packing=yes']);
    expect(v.code).toBe(2);
    expect(v.err).toContain('packing');
  });

  test('--alpha 0 and an empty --lr= are refused before the model is read', async () => {
    // A model folder that does not exist: the option check must fail first, naming the flag.
    const missing = join(tmp, 'no-such-model');
    const a = await train(missing, ['--alpha', '0']);
    expect(a.code).toBe(2);
    expect(a.err).toContain('--alpha');
    const l = await train(missing, ['--lr=']);
    expect(l.code).toBe(2);
    expect(l.err).toContain('--lr');
  });

  test('bad paths are refused before any work, naming the path, without a stack trace', async () => {
    const model = await modelDir('paths');
    const data = join(samples, 'baking-cups-to-grams.jsonl');
    const file = join(tmp, 'a-file');
    await writeFile(file, 'x');
    const cases: [string[], string, RegExp][] = [
      [['--data', join(tmp, 'missing.jsonl'), '--out', join(tmp, 'o1')], join(tmp, 'missing.jsonl'), /--data .*does not exist/],
      [['--data', tmp, '--out', join(tmp, 'o2')], tmp, /--data .*folder/],
      [['--data', data, '--out', file], file, /--out .*is a file, not a folder/],
      [['--data', data, '--out', join(file, 'sub')], file, /no folder can be made under it/],
      [['--data', data, '--out', '/proc/webtune-out'], '/proc/webtune-out', /kernel file system/],
      [['--data', data, '--out', join(tmp, 'o3'), '--log', tmp], tmp, /--log .*folder/],
      [['--data', data, '--out', join(tmp, 'o4'), '--log', join(file, 'log.jsonl')], file, /--log .*not a folder/],
    ];
    for (const [args, path, message] of cases) {
      const r = await run(['train', '--model', model, ...args]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.err).toContain(path);
      expect(r.err).toMatch(message);
      expect(r.err).not.toMatch(/\n\s+at /); // no stack frames
      expect(r.err).not.toMatch(/Loading|Training/); // nothing started
    }
    const r = await run(['eval', '--model', model, '--data', join(tmp, 'missing.jsonl')]);
    expect(r.code).toBe(2);
    expect(r.err).toContain(join(tmp, 'missing.jsonl'));
  });

  test('an unwritable --out or --log is refused at once by the real command (run as an unprivileged user)', async () => {
    const model = await modelDir('paths-ro');
    const ro = join(tmp, 'read-only');
    await mkdir(ro);
    await chmod(tmp, 0o777); // the unprivileged user creates --out o5 here
    await chmod(ro, 0o555);
    const data = join(samples, 'baking-cups-to-grams.jsonl');
    for (const [extra, path] of [[['--out', join(ro, 'out')], join(ro, 'out')], [['--out', join(tmp, 'o5'), '--log', join(ro, 'log.jsonl')], join(ro, 'log.jsonl')]] as const) {
      const r = spawnSync(process.execPath, [bin, 'train', '--model', model, '--data', data, ...extra], {
        encoding: 'utf8', timeout: 60_000, ...(process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {}),
      });
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr).toContain(`${path}: permission denied (EACCES)`);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
  });

  test('an all-NaN --init-adapter is refused naming the tensor, before the GPU', async () => {
    const dir = await modelDir('nan-adapter-base');
    const ad = join(tmp, 'nan-adapter');
    await mkdir(ad, { recursive: true });
    await writeFile(join(ad, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r: 2, lora_alpha: 4, target_modules: ['q_proj'], task_type: 'CAUSAL_LM' }));
    const { writeSafetensors } = await import('../io/safetensors.ts');
    const tensors: [string, { dtype: 'F32'; shape: number[]; data: Float32Array }][] = [];
    for (let l = 0; l < 2; l++) {
      tensors.push([`base_model.model.model.layers.${l}.self_attn.q_proj.lora_A.weight`, { dtype: 'F32', shape: [2, 64], data: new Float32Array(128).fill(NaN) }]);
      tensors.push([`base_model.model.model.layers.${l}.self_attn.q_proj.lora_B.weight`, { dtype: 'F32', shape: [64, 2], data: new Float32Array(128).fill(NaN) }]);
    }
    await writeFile(join(ad, 'adapter_model.safetensors'), writeSafetensors(tensors, { format: 'pt' }));
    const r = await train(dir, ['--init-adapter', ad]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/layers\.0\.self_attn\.q_proj\.lora_A\.weight" holds NaN at index 0/);
    expect(r.err).not.toMatch(/Loading/);
  });

  test('a run whose examples all lose their trained tokens to truncation is refused before the GPU', async () => {
    const r = await run(['train', '--model', await modelDir('seq-len'), '--data', join(samples, 'baking-cups-to-grams.jsonl'), '--out', join(tmp, 'o-seq'), '--seq-len', '20']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/all 150 examples lose every trained token to truncation at sequence length 20/);
    expect(r.err).toContain('--seq-len 34');
    expect(r.err).not.toMatch(/Loading|Training/);
  });
});
