// A merged folder evaluated as a plain model (--quant none) gives the loss of the base with the
// adapter applied: exactly up to f32 rounding for an F32 base, within bf16 precision for a BF16 one.
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { main } from '../node/cli.ts';
import { adapterTensorSpecs, encodeAdapter, loraConfig } from '../io/peft.ts';
import { SafetensorsFile, writeSafetensors } from '../io/safetensors.ts';
import { bytesSource } from '../io/byte-source.ts';
import { parseModelConfig } from '../model/config.ts';
import { rng } from '../rng.ts';

const demo = fileURLToPath(new URL('../../public/models/demo', import.meta.url));
const data = fileURLToPath(new URL('../../public/samples/baking-cups-to-grams.jsonl', import.meta.url));
let tmp: string, adapter: string, rows: string;
// Three (F32) or two (BF16) evaluations of a 32000-token vocabulary on SwiftShader: 90 to 120 s each
// test on shared CI cores, over the tier's 120 s default.
const EVAL_TIMEOUT_MS = 600_000;

async function cli(args: string[]): Promise<string> {
  let out = '', err = '';
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => ((out += String(s)), true));
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => ((err += String(s)), true));
  const l = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void (out += a.join(' ') + '\n'));
  try {
    const code = await main(args);
    if (code !== 0) throw new Error(`webtune ${args[0]} exited ${code}: ${err}`);
    return out;
  } finally {
    o.mockRestore();
    e.mockRestore();
    l.mockRestore();
  }
}

async function evalLoss(model: string, withAdapter: boolean): Promise<number> {
  const out = await cli(['eval', '--model', model, ...(withAdapter ? ['--adapter', adapter] : []), '--quant', 'none', '--data', rows, '--seq-len', '32', '--json']);
  return JSON.parse(out.trim().split('\n').at(-1)!).loss;
}

/** A copy of the demo model with its BF16 weights widened to F32 (exact). */
async function f32Copy(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json']) await copyFile(join(demo, f), join(dir, f));
  const st = await SafetensorsFile.open(bytesSource('model.safetensors', new Uint8Array(await readFile(join(demo, 'model.safetensors')))));
  const tensors: [string, { dtype: 'F32'; shape: number[]; data: Float32Array }][] = [];
  for (const t of st.tensors) tensors.push([t.name, { dtype: 'F32', shape: t.shape, data: Float32Array.from(await st.readFloat32(t.name)) }]);
  await writeFile(join(dir, 'model.safetensors'), writeSafetensors(tensors));
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'webtune-merge-gpu-'));
  rows = join(tmp, 'rows.jsonl');
  await writeFile(rows, (await readFile(data, 'utf8')).split('\n').slice(0, 4).join('\n'));
  adapter = join(tmp, 'adapter');
  await mkdir(adapter);
  const cfg = parseModelConfig(JSON.parse(await readFile(join(demo, 'config.json'), 'utf8')));
  const lora = loraConfig({ loraDropout: 0, r: 4, loraAlpha: 8, targetModules: ['q_proj', 'v_proj', 'down_proj'] });
  const r = rng(2);
  const weights = new Map(adapterTensorSpecs(cfg, lora).map((s) => [s.key, Float32Array.from({ length: s.shape[0] * s.shape[1] }, () => (r() * 2 - 1) * 0.2)]));
  for (const [n, b] of Object.entries(encodeAdapter(cfg, lora, weights))) await writeFile(join(adapter, n), b);
});
afterAll(() => rm(tmp, { recursive: true, force: true }));

describe('webtune eval of a merged folder', () => {
  test('F32 base: merged loss equals base + adapter up to f32 rounding', async () => {
    const base = join(tmp, 'demo-f32'), merged = join(tmp, 'merged-f32');
    await f32Copy(base);
    await cli(['export', '--model', base, '--adapter', adapter, '--format', 'merged', '--out', merged]);
    const withAdapter = await evalLoss(base, true), plain = await evalLoss(base, false), mergedLoss = await evalLoss(merged, false);
    expect(Math.abs(withAdapter - plain)).toBeGreaterThan(1e-3); // the adapter changes the model
    expect(mergedLoss).toBeCloseTo(withAdapter, 5);
  }, EVAL_TIMEOUT_MS);

  test('BF16 base: merged loss equals base + adapter within bf16 precision', async () => {
    const merged = join(tmp, 'merged-bf16');
    await cli(['export', '--model', demo, '--adapter', adapter, '--format', 'merged', '--out', merged]);
    const withAdapter = await evalLoss(demo, true), mergedLoss = await evalLoss(merged, false);
    // Each merged weight is W + s·B·A rounded once to bf16 (relative error <= 2^-9); the loss moves
    // by less than bf16's own relative precision (2^-8).
    expect(Math.abs(mergedLoss - withAdapter)).toBeLessThan(2 ** -8 * Math.abs(withAdapter));
  }, EVAL_TIMEOUT_MS);
});
