import { describe, expect, test } from 'vitest';
import { ModelFileError } from '../errors.ts';
import { type ByteSource, bytesSource } from './byte-source.ts';
import { openModelFolder } from './model-folder.ts';
import { writeSafetensors } from './safetensors.ts';

const enc = new TextEncoder();
const json = (name: string, v: unknown): [string, ByteSource] => [name, bytesSource(name, enc.encode(JSON.stringify(v)))];
const config = { model_type: 'llama', vocab_size: 4, hidden_size: 2, intermediate_size: 3, num_hidden_layers: 1, num_attention_heads: 1 };
const f32 = (...v: number[]) => ({ dtype: 'F32' as const, shape: [v.length], data: new Float32Array(v) });

function shard(name: string, tensors: Record<string, ReturnType<typeof f32>>): [string, ByteSource] {
  return [name, bytesSource(name, writeSafetensors(tensors))];
}

async function refused(files: [string, ByteSource][]): Promise<ModelFileError> {
  const e = await openModelFolder(files).then(() => null, (x: unknown) => x);
  expect(e).toBeInstanceOf(ModelFileError);
  return e as ModelFileError;
}

describe('openModelFolder', () => {
  test('single file: config, tokenizer files, tensors in file order, inv_freq ignored', async () => {
    const files = [
      json('SmolLM2/config.json', config),
      json('SmolLM2/tokenizer.json', {}),
      json('SmolLM2/tokenizer_config.json', {}),
      shard('SmolLM2/model.safetensors', { 'model.norm.weight': f32(1, 2), 'model.layers.0.self_attn.rotary_emb.inv_freq': f32(1) }),
      ['SmolLM2/pytorch_model.bin', bytesSource('pytorch_model.bin', new Uint8Array([0x80, 2]))] as [string, ByteSource],
    ];
    const m = await openModelFolder(files);
    expect(m.config).toEqual(config);
    expect(m.tokenizer?.name).toBe('SmolLM2/tokenizer.json');
    expect(m.tokenizerConfig).not.toBeNull();
    expect(m.shards).toEqual(['model.safetensors']);
    const seen: string[] = [];
    for await (const t of m.tensors()) {
      seen.push(t.name);
      expect([...(await t.readFloat32())]).toEqual([1, 2]);
    }
    expect(seen).toEqual(['model.norm.weight']);
    expect([...(await m.tensorIndex()).keys()]).toEqual(['model.norm.weight']);
  });

  test('sharded: follows weight_map, iterates shard by shard, checks the index against the shards', async () => {
    const index = { metadata: { total_size: 20 }, weight_map: { 'a.weight': 'model-00001-of-00002.safetensors', 'b.weight': 'model-00002-of-00002.safetensors', 'c.weight': 'model-00002-of-00002.safetensors' } };
    const files = [
      json('config.json', config),
      json('model.safetensors.index.json', index),
      shard('model-00002-of-00002.safetensors', { 'c.weight': f32(3), 'b.weight': f32(2, 2) }),
      shard('model-00001-of-00002.safetensors', { 'a.weight': f32(1) }),
    ];
    const m = await openModelFolder(files);
    expect(m.shards).toEqual(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
    const order: string[] = [];
    for await (const t of m.tensors()) order.push(`${t.file}:${t.name}:${t.shape}`);
    expect(order).toEqual(['model-00001-of-00002.safetensors:a.weight:1', 'model-00002-of-00002.safetensors:b.weight:2', 'model-00002-of-00002.safetensors:c.weight:1']);
    const idx = await m.tensorIndex();
    expect([...(await idx.get('c.weight')!.readFloat32())]).toEqual([3]);

    // The index names a tensor its shard does not hold.
    const wrong = await openModelFolder([...files.slice(0, 1), json('model.safetensors.index.json', { weight_map: { ...index.weight_map, 'd.weight': 'model-00001-of-00002.safetensors' } }), ...files.slice(2)]);
    await expect(wrong.tensorIndex()).rejects.toMatchObject({ details: { tensor: 'd.weight', file: 'model-00001-of-00002.safetensors' } });
  });

  test('a shard listed in the index but absent, or with an unsafe name, is refused', async () => {
    const e = await refused([json('config.json', config), json('model.safetensors.index.json', { weight_map: { 'a.weight': 'model-00001-of-00002.safetensors' } })]);
    expect(e.details).toMatchObject({ file: 'model-00001-of-00002.safetensors', reason: 'missing-file' });
    const e2 = await refused([json('config.json', config), json('model.safetensors.index.json', { weight_map: { 'a.weight': '../../etc/passwd' } })]);
    expect(e2.message).toContain('unsafe shard file');
  });

  test('pickle-only folders are refused with the reason; an index pointing at .bin too', async () => {
    const pickle: [string, ByteSource] = ['pytorch_model.bin', bytesSource('pytorch_model.bin', new Uint8Array([0x80, 2, 0x7d]))];
    const e = await refused([json('config.json', config), pickle]);
    expect(e.details).toMatchObject({ file: 'pytorch_model.bin', reason: 'pickle' });
    expect(e.message).toMatch(/can execute arbitrary code/);
    expect(e.hint).toMatch(/safetensors/);
    for (const name of ['model.pt', 'weights.pth', 'last.ckpt']) {
      expect((await refused([json('config.json', config), [name, bytesSource(name, new Uint8Array(1))]])).details.file).toBe(name);
    }
    const e3 = await refused([json('config.json', config), json('model.safetensors.index.json', { weight_map: { a: 'pytorch_model-00001-of-00002.bin' } })]);
    expect(e3.details.reason).toBe('pickle');
  });

  test('missing config.json, no weights, shards without an index', async () => {
    expect((await refused([shard('model.safetensors', {})])).details.file).toBe('config.json');
    expect((await refused([json('config.json', config)])).details.reason).toBe('missing-file');
    const e = await refused([json('config.json', config), shard('model-00001-of-00002.safetensors', {}), shard('model-00002-of-00002.safetensors', {})]);
    expect(e.details.file).toBe('model.safetensors.index.json');
  });

  test('a damaged config.json is a typed error naming it', async () => {
    const e = await refused([['config.json', bytesSource('config.json', enc.encode('{"model_type": '))], shard('model.safetensors', {})]);
    expect(e.details.file).toBe('config.json');
  });
});
