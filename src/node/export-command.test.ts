// `webtune export` end to end on the tiny fixture models (no GPU involved): each format's files,
// and bad input refused by name with nothing left behind.
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gguf } from '@huggingface/gguf';
import { main } from './cli.ts';
import { parseModelConfig } from '../model/config.ts';
import { adapterTensorSpecs, encodeAdapter, loraConfig, type LoraConfig } from '../io/peft.ts';
import { rng } from '../rng.ts';

const fixtures = fileURLToPath(new URL('../../fixtures/models/', import.meta.url));
let tmp: string;

async function run(args: string[]): Promise<{ code: number; err: string }> {
  let err = '';
  const spy = vi.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => ((err += String(s)), true));
  try {
    return { code: await main(args), err };
  } finally {
    spy.mockRestore();
  }
}

/** A seeded random PEFT adapter for a fixture model, written as PEFT files into `dir`. */
async function writeAdapter(model: string, dir: string, lora: LoraConfig, seed = 1): Promise<Map<string, Float32Array>> {
  const cfg = parseModelConfig(JSON.parse(await readFile(join(fixtures, model, 'config.json'), 'utf8')));
  const r = rng(seed);
  const weights = new Map(adapterTensorSpecs(cfg, lora).map((s) => [s.key, Float32Array.from({ length: s.shape[0] * s.shape[1] }, () => (r() * 2 - 1) * 0.1)]));
  await mkdir(dir, { recursive: true });
  for (const [name, bytes] of Object.entries(encodeAdapter(cfg, lora, weights))) await writeFile(join(dir, name), bytes);
  return weights;
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'webtune-export-'));
});
afterAll(() => rm(tmp, { recursive: true, force: true }));

describe('webtune export --format gguf', () => {
  test('writes a GGUF LoRA adapter; --out over a file needs --force', async () => {
    const ad = join(tmp, 'llama-adapter');
    await writeAdapter('tiny-llama', ad, loraConfig({ loraDropout: 0, r: 2, loraAlpha: 4, targetModules: ['q_proj', 'k_proj', 'v_proj'] }));
    const out = join(tmp, 'a.gguf');
    const args = ['export', '--model', join(fixtures, 'tiny-llama'), '--adapter', ad, '--format', 'gguf', '--out', out];
    const r = await run(args);
    expect(r.code, r.err).toBe(0);
    const p = await gguf(out, { allowLocalFile: true });
    expect(p.tensorInfos.map((t) => t.name).filter((n) => n.startsWith('blk.0.'))).toEqual([
      'blk.0.attn_q.weight.lora_a', 'blk.0.attn_q.weight.lora_b', 'blk.0.attn_k.weight.lora_a', 'blk.0.attn_k.weight.lora_b',
      'blk.0.attn_v.weight.lora_a', 'blk.0.attn_v.weight.lora_b',
    ]);
    const again = await run(args);
    expect(again.code).toBe(2);
    expect(again.err).toMatch(/already exists/);
    expect(again.err).toMatch(/--force/);
    const f16 = await run([...args, '--force', '--type', 'f16']);
    expect(f16.code, f16.err).toBe(0);
    expect((await gguf(out, { allowLocalFile: true })).tensorInfos[0].dtype).toBe(1);
    expect((await readdir(tmp)).filter((n) => n.includes('.tmp-'))).toEqual([]);
    const intoFolder = await run([...args.slice(0, -1), tmp, '--force']);
    expect(intoFolder.code).toBe(2);
    expect(intoFolder.err).toMatch(/is a folder/);
  });

  test('an adapter made for another base is refused by tensor name, and nothing is written', async () => {
    const ad = join(tmp, 'qwen-adapter');
    // tiny-qwen2's k_proj has 64 outputs; tiny-llama's has 32.
    await writeAdapter('tiny-qwen2', ad, loraConfig({ loraDropout: 0, r: 2, loraAlpha: 4, targetModules: ['k_proj'] }));
    const out = join(tmp, 'wrong.gguf');
    const r = await run(['export', '--model', join(fixtures, 'tiny-llama'), '--adapter', ad, '--format', 'gguf', '--out', out]);
    expect(r.code).toBe(2);
    expect(r.err).toContain('k_proj.lora_B');
    await expect(readFile(out)).rejects.toThrow();
  });

  test('an unknown format or a missing option is a usage error', async () => {
    expect((await run(['export', '--model', 'x', '--adapter', 'y', '--format', 'onnx', '--out', 'z'])).err).toMatch(/Unknown export format/);
    expect((await run(['export', '--model', 'x'])).code).toBe(2);
  });
});
