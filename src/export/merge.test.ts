// The merged export on the tiny fixtures (BF16 Llama, F32 Mistral, F16 Qwen2, and Phi-3's fused modules): merged weights
// against an independent f64 computation of W + scaling·B·A, every other tensor byte for byte,
// --from-nf4, sharding with an index, and a merge that fails halfway leaving nothing behind.
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { main } from '../node/cli.ts';
import { directorySources } from '../node/fs-source.ts';
import { openModelFolder, type FolderTensor } from '../io/model-folder.ts';
import { adapterTensorSpecs, encodeAdapter, loraConfig, type LoraConfig } from '../io/peft.ts';
import { peftScaling } from '../model/lora.ts';
import { parseModelConfig } from '../model/config.ts';
import { expectedWeights } from '../model/weights.ts';
import { dequantizeNF4, quantizeNF4 } from '../quant/nf4.ts';
import { rng } from '../rng.ts';
import { shardIndexJson, splitShards, stateDictOrder } from './merge.ts';

const fixtures = fileURLToPath(new URL('../../fixtures/models/', import.meta.url));
let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'webtune-merge-'));
});
afterAll(() => rm(tmp, { recursive: true, force: true }));

async function run(args: string[]): Promise<{ code: number; err: string }> {
  let err = '';
  const spy = vi.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => ((err += String(s)), true));
  try {
    return { code: await main(args), err };
  } finally {
    spy.mockRestore();
  }
}

async function adapterFor(model: string, dir: string, lora: LoraConfig, seed = 1): Promise<Map<string, Float32Array>> {
  const cfg = parseModelConfig(JSON.parse(await readFile(join(fixtures, model, 'config.json'), 'utf8')));
  const r = rng(seed);
  // B is zero after PEFT's init; a trained one is not. Values large enough to move bf16 weights.
  const weights = new Map(adapterTensorSpecs(cfg, lora).map((s) => [s.key, Float32Array.from({ length: s.shape[0] * s.shape[1] }, () => (r() * 2 - 1) * 0.3)]));
  await mkdir(dir, { recursive: true });
  for (const [name, bytes] of Object.entries(encodeAdapter(cfg, lora, weights))) await writeFile(join(dir, name), bytes);
  return weights;
}

async function tensors(dir: string): Promise<Map<string, FolderTensor>> {
  return (await openModelFolder(await directorySources(dir))).tensorIndex();
}

/** Unit in the last place of x in a format with `mant` fraction bits and smallest normal exponent. */
function ulp(x: number, mant: number, minExp: number): number {
  const e = Math.max(Math.floor(Math.log2(Math.abs(x) || 2 ** minExp)), minExp);
  return 2 ** (e - mant);
}
const FORMAT: Record<string, [number, number]> = { F32: [23, -126], F16: [10, -14], BF16: [7, -126] };

/** Checks merged == round(exact) where exact = W + s·ΣB·A in f64. Within the f32 computation's error
 *  (r + 2 roundings of the terms) of a rounding midpoint either neighbour is right; everywhere else the
 *  value must be exactly the nearest. For F32 the tolerance is that f32 error itself. */
function checkMerged(name: string, dtype: string, got: Float32Array, w: Float32Array, A: Float32Array, B: Float32Array, r: number, s: number): number {
  const [mant, minExp] = FORMAT[dtype];
  const inp = A.length / r, out = B.length / r;
  let exactlyNearest = 0;
  for (let i = 0; i < out; i++) {
    for (let j = 0; j < inp; j++) {
      let d = 0, mag = 0;
      for (let k = 0; k < r; k++) {
        d += B[i * r + k] * A[k * inp + j];
        mag += Math.abs(B[i * r + k] * A[k * inp + j]);
      }
      const idx = i * inp + j, exact = w[idx] + s * d;
      const f32err = (r + 2) * 2 ** -24 * (Math.abs(w[idx]) + Math.abs(s) * mag);
      const err = Math.abs(got[idx] - exact);
      if (dtype === 'F32') {
        expect(err, `${name}[${idx}]`).toBeLessThanOrEqual(f32err);
        exactlyNearest++;
        continue;
      }
      const half = ulp(exact, mant, minExp) / 2;
      if (Math.abs(err - half) > f32err) {
        expect(err, `${name}[${idx}] = ${got[idx]}, exact ${exact}`).toBeLessThan(half);
        exactlyNearest++;
      } else expect(err, `${name}[${idx}]`).toBeLessThanOrEqual(half + f32err);
    }
  }
  return exactlyNearest;
}

describe('stateDictOrder, splitShards, shardIndexJson', () => {
  test('HF parameter order and huggingface_hub shard cuts', () => {
    expect(stateDictOrder(['lm_head.weight', 'model.norm.weight', 'model.layers.10.mlp.up_proj.weight', 'model.layers.2.input_layernorm.weight',
      'model.layers.2.self_attn.k_proj.weight', 'model.layers.2.self_attn.q_proj.bias', 'model.layers.2.self_attn.q_proj.weight', 'model.embed_tokens.weight']))
      .toEqual(['model.embed_tokens.weight', 'model.layers.2.self_attn.q_proj.weight', 'model.layers.2.self_attn.q_proj.bias', 'model.layers.2.self_attn.k_proj.weight',
        'model.layers.2.input_layernorm.weight', 'model.layers.10.mlp.up_proj.weight', 'model.norm.weight', 'lm_head.weight']);
    // A tensor over the limit is appended as its own shard at once, before the shard being filled.
    expect(splitShards([['a', 4], ['b', 4], ['big', 20], ['c', 3], ['d', 4], ['e', 3]], 10)).toEqual([['big'], ['a', 'b'], ['c', 'd', 'e']]);
    expect(shardIndexJson(12, new Map([['b', 'f2'], ['a', 'f1']]))).toBe('{\n  "metadata": {\n    "total_size": 12\n  },\n  "weight_map": {\n    "a": "f1",\n    "b": "f2"\n  }\n}\n');
  });
});

describe('webtune export --format merged', () => {
  for (const model of ['tiny-llama', 'tiny-mistral', 'tiny-qwen2']) {
    test(`${model}: adapted weights are W + scaling·B·A in the base dtype, the rest byte-identical`, async () => {
      const lora = loraConfig({ loraDropout: 0, r: 4, loraAlpha: 8, targetModules: ['q_proj', 'k_proj', 'down_proj'] });
      const ad = join(tmp, `${model}-adapter`), out = join(tmp, `${model}-merged`);
      const weights = await adapterFor(model, ad, lora);
      const r = await run(['export', '--model', join(fixtures, model), '--adapter', ad, '--format', 'merged', '--out', out]);
      expect(r.code, r.err).toBe(0);
      const base = await tensors(join(fixtures, model)), merged = await tensors(out);
      expect([...merged.keys()].sort()).toEqual([...base.keys()].sort());
      expect((await readdir(out)).sort()).toEqual(['config.json', 'model.safetensors']);
      expect(await readFile(join(out, 'config.json'))).toEqual(await readFile(join(fixtures, model, 'config.json')));
      const s = peftScaling(lora);
      let adapted = 0, nearest = 0, total = 0;
      for (const [name, t] of base) {
        const m = merged.get(name)!;
        expect(m.dtype, name).toBe(t.dtype);
        expect(m.shape, name).toEqual(t.shape);
        const mod = /^model\.layers\.(\d+)\.(?:self_attn|mlp)\.(q_proj|k_proj|down_proj)\.weight$/.exec(name);
        if (!mod) {
          expect(Buffer.from(await m.readBytes()).equals(Buffer.from(await t.readBytes())), name).toBe(true);
          continue;
        }
        adapted++;
        const key = `base_model.model.${name.replace(/\.weight$/, '')}`;
        const got = await m.readFloat32();
        nearest += checkMerged(name, t.dtype, got, await t.readFloat32(), weights.get(`${key}.lora_A.weight`)!, weights.get(`${key}.lora_B.weight`)!, 4, s);
        total += got.length;
        expect(Buffer.from(await m.readBytes()).equals(Buffer.from(await t.readBytes())), `${name} changed`).toBe(false);
      }
      expect(adapted).toBe(6);
      // Nearly every element is far from a rounding midpoint, so it is checked exactly.
      expect(nearest / total).toBeGreaterThan(0.99);
    });
  }

  test('tiny-phi3: the fused qkv_proj and gate_up_proj merge whole, W + scaling·B·A, the rest byte-identical', async () => {
    const lora = loraConfig({ loraDropout: 0, r: 4, loraAlpha: 8, targetModules: ['qkv_proj', 'gate_up_proj'] });
    const ad = join(tmp, 'tiny-phi3-adapter'), out = join(tmp, 'tiny-phi3-merged');
    const weights = await adapterFor('tiny-phi3', ad, lora);
    const r = await run(['export', '--model', join(fixtures, 'tiny-phi3'), '--adapter', ad, '--format', 'merged', '--out', out]);
    expect(r.code, r.err).toBe(0);
    const base = await tensors(join(fixtures, 'tiny-phi3')), merged = await tensors(out);
    expect([...merged.keys()].sort()).toEqual([...base.keys()].sort());
    let adapted = 0, nearest = 0, total = 0;
    for (const [name, t] of base) {
      const m = merged.get(name)!;
      expect(m.shape, name).toEqual(t.shape);
      if (!/\.(qkv_proj|gate_up_proj)\.weight$/.test(name)) {
        expect(Buffer.from(await m.readBytes()).equals(Buffer.from(await t.readBytes())), name).toBe(true);
        continue;
      }
      adapted++;
      const key = `base_model.model.${name.replace(/\.weight$/, '')}`, got = await m.readFloat32();
      nearest += checkMerged(name, t.dtype, got, await t.readFloat32(), weights.get(`${key}.lora_A.weight`)!, weights.get(`${key}.lora_B.weight`)!, 4, peftScaling(lora));
      total += got.length;
    }
    expect(adapted).toBe(4);
    expect(nearest / total).toBeGreaterThan(0.99);
  });

  test('--from-nf4 merges into the NF4-dequantized base, rounded to the base dtype', async () => {
    const lora = loraConfig({ loraDropout: 0, r: 2, loraAlpha: 4, targetModules: ['v_proj'] });
    const ad = join(tmp, 'nf4-adapter'), out = join(tmp, 'nf4-merged');
    const weights = await adapterFor('tiny-llama', ad, lora, 9);
    const r = await run(['export', '--model', join(fixtures, 'tiny-llama'), '--adapter', ad, '--format', 'merged', '--out', out, '--from-nf4']);
    expect(r.code, r.err).toBe(0);
    const base = await tensors(join(fixtures, 'tiny-llama')), merged = await tensors(out);
    const cfg = parseModelConfig(JSON.parse(await readFile(join(fixtures, 'tiny-llama', 'config.json'), 'utf8')));
    const linear = new Set(expectedWeights(cfg).filter((w) => w.quantizable).map((w) => w.name));
    for (const [name, t] of base) {
      const m = merged.get(name)!;
      if (!linear.has(name)) {
        expect(Buffer.from(await m.readBytes()).equals(Buffer.from(await t.readBytes())), name).toBe(true);
        continue;
      }
      const w = await t.readFloat32();
      const q = quantizeNF4(w);
      const deq = dequantizeNF4(q.packed, q.absmax, w.length);
      // bitsandbytes returns the dequantized weight in the original dtype (bf16 here): round it.
      const deq16 = Float32Array.from(deq, (x) => new Float32Array(new Uint32Array([bf16(x) << 16]).buffer)[0]);
      const got = await m.readFloat32();
      if (name.endsWith('v_proj.weight')) {
        const key = `base_model.model.${name.replace(/\.weight$/, '')}`;
        checkMerged(name, 'BF16', got, deq16, weights.get(`${key}.lora_A.weight`)!, weights.get(`${key}.lora_B.weight`)!, 2, 2);
      } else {
        expect([...got], name).toEqual([...deq16]);
      }
    }
  });

  test('--max-shard-size splits into shards with an index that the model reader accepts', async () => {
    const lora = loraConfig({ loraDropout: 0, r: 2, loraAlpha: 4, targetModules: ['q_proj'] });
    const ad = join(tmp, 'shard-adapter'), one = join(tmp, 'one'), many = join(tmp, 'many');
    await adapterFor('tiny-mistral', ad, lora);
    const args = ['export', '--model', join(fixtures, 'tiny-mistral'), '--adapter', ad, '--format', 'merged'];
    expect((await run([...args, '--out', one])).code).toBe(0);
    const r = await run([...args, '--out', many, '--max-shard-size', '100KB']);
    expect(r.code, r.err).toBe(0);
    const files = (await readdir(many)).filter((f) => f.startsWith('model')).sort();
    expect(files[0]).toBe('model-00001-of-00004.safetensors');
    expect(files.at(-1)).toBe('model.safetensors.index.json');
    const index = JSON.parse(await readFile(join(many, 'model.safetensors.index.json'), 'utf8'));
    const a = await tensors(one), b = await tensors(many);
    expect(Object.keys(index.weight_map).sort()).toEqual([...a.keys()].sort());
    expect(index.metadata.total_size).toBe([...a.values()].reduce((s, t) => s + t.end - t.begin, 0));
    for (const [name, t] of a) {
      expect(index.weight_map[name]).toBe(b.get(name)!.file.split('/').at(-1));
      expect(Buffer.from(await b.get(name)!.readBytes()).equals(Buffer.from(await t.readBytes())), name).toBe(true);
    }
    // Each shard holds at most 100 kB of tensor data, unless a single tensor is larger (the 64 kB
    // embedding fits; so every shard is within the limit here).
    for (const f of files.slice(0, -1)) {
      const shard = [...b.values()].filter((t) => t.file.endsWith(f));
      expect(shard.reduce((s, t) => s + t.end - t.begin, 0)).toBeLessThanOrEqual(100_000);
    }
  });

  test('a merge that fails halfway leaves no folder and no temporary files; --out needs --force', async () => {
    // A copy of tiny-mistral whose layer 1 q_proj is stored as I32 (same size as F32, so the header is
    // valid): the merge writes earlier tensors, then cannot read this one as floating point.
    const broken = join(tmp, 'broken');
    await mkdir(broken, { recursive: true });
    await copyFile(join(fixtures, 'tiny-mistral', 'config.json'), join(broken, 'config.json'));
    const bytes = new Uint8Array(await readFile(join(fixtures, 'tiny-mistral', 'model.safetensors')));
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    const header = new TextDecoder().decode(bytes.subarray(8, 8 + n));
    const edited = header.replace(/("model\.layers\.1\.self_attn\.q_proj\.weight":\{"dtype":)"F32"/, '$1"I32"');
    expect(edited).not.toBe(header);
    bytes.set(new TextEncoder().encode(edited), 8);
    await writeFile(join(broken, 'model.safetensors'), bytes);
    const ad = join(tmp, 'broken-adapter');
    await adapterFor('tiny-mistral', ad, loraConfig({ loraDropout: 0, r: 2, loraAlpha: 4, targetModules: ['q_proj'] }));
    const out = join(tmp, 'broken-merged');
    const r = await run(['export', '--model', broken, '--adapter', ad, '--format', 'merged', '--out', out]);
    expect(r.code).toBe(2);
    expect(r.err).toContain('model.layers.1.self_attn.q_proj.weight');
    expect((await readdir(tmp)).filter((f) => f.includes('broken-merged'))).toEqual([]);

    await mkdir(out);
    await writeFile(join(out, 'keep.txt'), 'mine');
    const args = ['export', '--model', join(fixtures, 'tiny-mistral'), '--adapter', ad, '--format', 'merged', '--out', out];
    const refused = await run(args);
    expect(refused.code).toBe(2);
    expect(refused.err).toMatch(/--force/);
    expect(await readFile(join(out, 'keep.txt'), 'utf8')).toBe('mine');
    // With --force, a failed merge still leaves the old folder as it was.
    const failed = await run(['export', '--model', broken, '--adapter', ad, '--format', 'merged', '--out', out, '--force']);
    expect(failed.code).toBe(2);
    expect(await readdir(out)).toEqual(['keep.txt']);
    expect((await run([...args, '--force'])).code).toBe(0);
    expect((await readdir(out)).sort()).toEqual(['config.json', 'model.safetensors']);
    expect((await readdir(tmp)).filter((f) => f.startsWith('.'))).toEqual([]);
  });
});

/** bf16 bits of x, round to nearest even, written independently of src/export/float16.ts: through
 *  f64 arithmetic on the value instead of integer tricks on the bits. */
function bf16(x: number): number {
  const v = Math.fround(x);
  if (v === 0) return Object.is(v, -0) ? 0x8000 : 0;
  const e = Math.max(Math.floor(Math.log2(Math.abs(v))), -126);
  const step = 2 ** (e - 7);
  const q = Math.abs(v) / step, f = Math.floor(q), d = q - f;
  const m = d > 0.5 || (d === 0.5 && f % 2 === 1) ? f + 1 : f;
  const r = Math.sign(v) * m * step;
  return new Uint32Array(new Float32Array([r]).buffer)[0] >>> 16;
}
