// The GGUF LoRA export, read back by an independent parser (@huggingface/gguf): every key and value,
// every tensor's name, shape, type and bytes; then back to PEFT tensors (q/k lora_b un-permuted),
// which must equal the adapter we started from.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gguf, GGUFValueType } from '@huggingface/gguf';
import { parseModelConfig, type ModelConfig } from '../model/config.ts';
import { adapterTensorSpecs, loraConfig, type LoraConfig } from '../io/peft.ts';
import { f16BitsToNumber } from '../io/safetensors.ts';
import { rng } from '../rng.ts';
import { f16Bits } from './float16.ts';
import { writeGguf } from './gguf.ts';
import { adapterToGguf, ggufAlpha, ggufTensorName, permuteRows } from './gguf-lora.ts';

const fixtures = fileURLToPath(new URL('../../fixtures/models/', import.meta.url));
let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'webtune-gguf-'));
});
afterAll(() => rm(tmp, { recursive: true, force: true }));

async function config(name: string): Promise<ModelConfig> {
  return parseModelConfig(JSON.parse(await readFile(join(fixtures, name, 'config.json'), 'utf8')));
}

function randomAdapter(cfg: ModelConfig, lora: LoraConfig, seed = 1) {
  const specs = adapterTensorSpecs(cfg, lora);
  const r = rng(seed);
  const weights = new Map(specs.map((s) => [s.key, Float32Array.from({ length: s.shape[0] * s.shape[1] }, () => r() * 2 - 1)]));
  return { specs, weights };
}

async function parse(bytes: Uint8Array, name: string) {
  const path = join(tmp, name);
  await writeFile(path, bytes);
  return gguf(path, { allowLocalFile: true, typedMetadata: true });
}

function tensorBytes(file: Uint8Array, dataOffset: bigint, offset: bigint, n: number): Uint8Array {
  const at = Number(dataOffset + offset);
  return file.slice(at, at + n);
}

describe('GGUF writer', () => {
  test('header, key/values, tensor infos, 32-byte alignment and padding', async () => {
    const a = new Float32Array([1, 2, 3]), b = new Float32Array([4, 5, 6, 7, 8, 9]);
    const bytes = writeGguf([
      ['general.architecture', { type: 'string', value: 'llama' }],
      ['x.u32', { type: 'u32', value: 7 }],
      ['x.i32', { type: 'i32', value: -7 }],
      ['x.f32', { type: 'f32', value: 0.5 }],
      ['x.bool', { type: 'bool', value: true }],
      ['x.arr', { type: 'u32[]', value: [3, 1, 2] }],
    ], [
      { name: 'a', ne: [3], type: 'F32', data: new Uint8Array(a.buffer) },
      { name: 'b', ne: [3, 2], type: 'F32', data: new Uint8Array(b.buffer) },
    ]);
    const p = await parse(bytes, 'w.gguf');
    expect(p.metadata).toEqual({
      version: 3, tensor_count: 2n, kv_count: 6n,
      'general.architecture': 'llama', 'x.u32': 7, 'x.i32': -7, 'x.f32': 0.5, 'x.bool': true, 'x.arr': [3, 1, 2],
    });
    expect(p.tensorInfos).toEqual([
      { name: 'a', n_dims: 1, shape: [3n], dtype: 0, offset: 0n },
      { name: 'b', n_dims: 2, shape: [3n, 2n], dtype: 0, offset: 32n },
    ]);
    expect(Number(p.tensorDataOffset) % 32).toBe(0);
    expect(bytes.length).toBe(Number(p.tensorDataOffset) + 64); // both tensors padded to 32 bytes
    expect([...new Float32Array(tensorBytes(bytes, p.tensorDataOffset, 32n, 24).buffer)]).toEqual([...b]);
    expect([...bytes.subarray(Number(p.tensorDataOffset) + 12, Number(p.tensorDataOffset) + 32)].every((x) => x === 0)).toBe(true);
  });

  test('duplicate keys or a short tensor are refused', () => {
    expect(() => writeGguf([['k', { type: 'u32', value: 1 }], ['k', { type: 'u32', value: 2 }]], [])).toThrow(/twice/);
    expect(() => writeGguf([], [{ name: 't', ne: [4], type: 'F32', data: new Uint8Array(12) }])).toThrow(/needs 16/);
  });
});

describe('q/k permutation', () => {
  test('rows move as reshape(n_head, 2, half, cols).swapaxes(1, 2)', () => {
    // 8 rows, 2 heads of 4: within a head rows [0, 1 | 2, 3] (two rotary halves) interleave to 0, 2, 1, 3.
    const m = Float32Array.from({ length: 16 }, (_, i) => i); // (8, 2)
    const p = permuteRows(m, 8, 2, 2);
    const rows = Array.from({ length: 8 }, (_, r) => p[2 * r] / 2);
    expect(rows).toEqual([0, 2, 1, 3, 4, 6, 5, 7]);
    expect([...permuteRows(p, 8, 2, 2, true)]).toEqual([...m]);
  });
});

describe('GGUF LoRA adapter', () => {
  for (const [model, arch, permuted] of [['tiny-llama', 'llama', true], ['tiny-mistral', 'llama', true], ['tiny-qwen2', 'qwen2', false]] as const) {
    test(`${model}: keys, names, shapes, types, values, and back to PEFT`, async () => {
      const cfg = await config(model);
      const lora = loraConfig({ loraDropout: 0, r: 4, loraAlpha: 8, targetModules: 'all-linear' });
      const { specs, weights } = randomAdapter(cfg, lora);
      const bytes = adapterToGguf(cfg, lora, specs, weights, { name: 'my-adapter' });
      const p = await parse(bytes, `${model}.gguf`);
      expect(p.metadata).toEqual({
        version: 3, tensor_count: BigInt(specs.length), kv_count: 7n,
        'general.architecture': arch, 'general.type': 'adapter', 'general.name': 'my-adapter', 'general.file_type': 0,
        'general.quantization_version': 2, 'adapter.type': 'lora', 'adapter.lora.alpha': 8,
      });
      // The value types llama.cpp's loader asks for (gguf_get_val_str / _f32 / _u32).
      const typed = p.typedMetadata as Record<string, { type: number }>;
      expect(Object.fromEntries(['general.architecture', 'general.type', 'general.name', 'general.file_type', 'general.quantization_version', 'adapter.type', 'adapter.lora.alpha'].map((k) => [k, typed[k].type]))).toEqual({
        'general.architecture': GGUFValueType.STRING, 'general.type': GGUFValueType.STRING, 'general.name': GGUFValueType.STRING,
        'general.file_type': GGUFValueType.UINT32, 'general.quantization_version': GGUFValueType.UINT32,
        'adapter.type': GGUFValueType.STRING, 'adapter.lora.alpha': GGUFValueType.FLOAT32,
      });
      expect(p.tensorInfos.length).toBe(2 * cfg.numLayers * 7);
      const byName = new Map(p.tensorInfos.map((t) => [t.name, t]));
      for (const s of specs) {
        const name = ggufTensorName(s.layer, s.module, s.which);
        expect(name).toMatch(/^blk\.\d+\.(attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down)\.weight\.lora_[ab]$/);
        const t = byName.get(name)!;
        expect(t, name).toBeDefined();
        expect(t.shape).toEqual([BigInt(s.shape[1]), BigInt(s.shape[0])]);
        expect(t.dtype).toBe(0);
        expect(t.offset % 32n).toBe(0n);
        const data = new Float32Array(tensorBytes(bytes, p.tensorDataOffset, t.offset, 4 * s.shape[0] * s.shape[1]).buffer);
        // Back to PEFT: only q/k lora_b of the llama architecture were permuted.
        const heads = s.which === 'B' && permuted ? (s.module === 'q_proj' ? cfg.numHeads : s.module === 'k_proj' ? cfg.numKvHeads : null) : null;
        const peft = heads ? permuteRows(data, s.shape[0], s.shape[1], heads, true) : data;
        expect([...peft], s.key).toEqual([...weights.get(s.key)!]);
        if (heads) expect([...data]).not.toEqual([...weights.get(s.key)!]);
      }
      // The point of the permutation: B'·A equals the base's permutation applied to B·A.
      const q = specs.find((s) => s.module === 'q_proj' && s.which === 'B' && s.layer === 1)!;
      const qa = weights.get(q.key.replace('lora_B', 'lora_A'))!, qb = weights.get(q.key)!;
      const [out, r] = q.shape, inp = qa.length / r;
      const ba = (b: Float32Array) => Float32Array.from({ length: out * inp }, (_, k) => {
        let s = 0;
        for (let j = 0; j < r; j++) s += b[Math.floor(k / inp) * r + j] * qa[j * inp + (k % inp)];
        return s;
      });
      const heads = permuted ? cfg.numHeads : null;
      const want = heads ? permuteRows(ba(qb), out, inp, heads) : ba(qb);
      const gotB = new Float32Array(tensorBytes(bytes, p.tensorDataOffset, byName.get(ggufTensorName(1, 'q_proj', 'B'))!.offset, 4 * out * r).buffer);
      expect([...ba(gotB)]).toEqual([...want]);
    });
  }

  test('F16 tensors hold the round-to-nearest-even halves; rsLoRA folds sqrt(r) into alpha', async () => {
    const cfg = await config('tiny-llama');
    const lora = loraConfig({ loraDropout: 0, r: 4, loraAlpha: 8, useRslora: true, targetModules: ['v_proj'] });
    const { specs, weights } = randomAdapter(cfg, lora, 5);
    const bytes = adapterToGguf(cfg, lora, specs, weights, { type: 'F16' });
    const p = await parse(bytes, 'f16.gguf');
    const m = p.metadata as Record<string, unknown>;
    expect(m['general.file_type']).toBe(1);
    expect(m['adapter.lora.alpha']).toBe(16); // 8 / sqrt(4) = 4 = alpha' / r with alpha' = 16
    expect(ggufAlpha(lora) / lora.r).toBe(8 / Math.sqrt(4));
    for (const s of specs) {
      const t = p.tensorInfos.find((x) => x.name === ggufTensorName(s.layer, s.module, s.which))!;
      expect(t.dtype).toBe(1);
      const got = new Uint16Array(tensorBytes(bytes, p.tensorDataOffset, t.offset, 2 * s.shape[0] * s.shape[1]).buffer);
      const w = weights.get(s.key)!;
      expect([...got]).toEqual(Array.from(w, f16Bits));
      for (let i = 0; i < w.length; i++) expect(Math.abs(f16BitsToNumber(got[i]) - w[i])).toBeLessThanOrEqual(2 ** -11 * Math.abs(w[i]) + 2 ** -25);
    }
  });
});
