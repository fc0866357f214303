// Checkpoint serialization and the store's commit order.
import { describe, expect, test } from 'vitest';
import { CheckpointStore, decodeCheckpoint, encodeCheckpoint, type CheckpointState } from './checkpoint.ts';
import { memoryStore, type KeyValueStore } from '../io/cache.ts';
import { StorageQuotaError } from '../errors.ts';
import { ModelFileError } from '../errors.ts';
import type { Sequence } from '../data/types.ts';
import { writeSafetensors } from '../io/safetensors.ts';

const seq = (ids: number[], segs = [ids.length]): Sequence => ({
  input_ids: Int32Array.from(ids), labels: Int32Array.from(ids.map((x, i) => (i < 2 ? -100 : x))),
  position_ids: Int32Array.from(ids.map((_, i) => i)), seq_lengths: segs,
});

function state(step: number): CheckpointState<{ step: number; savedAt: number; modelKey: string }> {
  return {
    info: { step, savedAt: 1000 + step, modelKey: 'demo:nf4' },
    position: { step, epoch: 1, micro: 3 },
    loraStep: step,
    logs: [{ step: 1, epoch: 0, loss: 2.5, lr: 1e-4, grad_norm: 0.7, tokens: 40, tokens_per_s: 12.5, val_loss: 2.75 }],
    params: Float32Array.from({ length: 100 }, (_, i) => Math.sin(i) * step),
    m: Float32Array.from({ length: 100 }, (_, i) => i * 1e-3),
    v: Float32Array.from({ length: 100 }, (_, i) => i * 1e-6),
    train: [seq([1, 5, 6, 7, 2]), seq([1, 9, 2], [1, 2]), seq([])],
    validation: [],
  };
}

describe('checkpoint encoding', () => {
  test('round trip keeps every tensor, sequence, position and log exactly', async () => {
    const s = state(7);
    const back = await decodeCheckpoint(encodeCheckpoint(s));
    expect(back).toEqual(s);
  });

  test('a file that is not a webtune checkpoint is refused', async () => {
    const bad = writeSafetensors({ 'lora.params': { dtype: 'F32', shape: [1], data: new Float32Array(1) } }, { format: 'webtune-checkpoint-9' });
    await expect(decodeCheckpoint(bad, 'ck')).rejects.toThrow(/format "webtune-checkpoint-9"/);
  });
});

describe('CheckpointStore', () => {
  test('save replaces the previous checkpoint and leaves one blob', async () => {
    const mem = memoryStore();
    const store = new CheckpointStore(mem);
    expect(await store.info()).toBeNull();
    expect(await store.load()).toBeNull();
    await store.save(state(2));
    await store.save(state(4));
    expect(await store.info()).toEqual(state(4).info);
    expect((await store.load())!.position.step).toBe(4);
    expect([...mem.data.keys()].filter((k) => k.includes('/blob/'))).toHaveLength(1);
  });

  test('a blob left without its manifest (the tab closed between the two writes) is removed by the next save', async () => {
    const mem = memoryStore();
    const store = new CheckpointStore(mem);
    await store.save(state(2));
    mem.data.set('checkpoint/current/blob/99-3', new Uint8Array(8)); // written, manifest never
    expect((await store.load())!.info.step).toBe(2);
    await store.save(state(4));
    expect([...mem.data.keys()].filter((k) => k.includes('/blob/'))).toHaveLength(1);
    expect((await store.load())!.info.step).toBe(4);
  });

  test('a quota failure keeps the previous checkpoint loadable', async () => {
    const mem = memoryStore();
    let full = false;
    const kv: KeyValueStore = { ...mem, set: async (k, v) => (full ? Promise.reject(new DOMException('full', 'QuotaExceededError')) : mem.set(k, v)) };
    const store = new CheckpointStore(kv);
    await store.save(state(2));
    full = true;
    const err = await store.save(state(4)).catch((e) => e);
    expect(err).toBeInstanceOf(StorageQuotaError);
    expect(err.message).toContain('step 4');
    expect((await store.load())!.info.step).toBe(2);
    expect([...mem.data.keys()].filter((k) => k.includes('/blob/'))).toHaveLength(1);
  });

  test('a damaged blob is detected by its checksum and dropped', async () => {
    const mem = memoryStore();
    const store = new CheckpointStore(mem);
    await store.save(state(3));
    const key = [...mem.data.keys()].find((k) => k.includes('/blob/'))!;
    const b = (mem.data.get(key) as Uint8Array).slice();
    b[b.length - 1] ^= 0x40;
    mem.data.set(key, b);
    const err = await store.load().catch((e) => e);
    expect(err).toBeInstanceOf(ModelFileError);
    expect(err.message).toMatch(/step 3.*checksum/);
    expect(await store.info()).toBeNull();
    expect(mem.data.size).toBe(0);
  });
});
