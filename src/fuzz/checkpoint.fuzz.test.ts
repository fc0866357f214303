// Fuzzing the training checkpoint format (src/train/checkpoint.ts): random checkpoints round-trip
// exactly; damaged checkpoint bytes, checkpoints rebuilt with tensors of the wrong dtype or length
// and metadata of the wrong type, and a store whose manifest is anything at all, decode to a
// well-formed state or are refused with a ModelFileError naming the checkpoint.
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { ModelFileError } from '../errors.ts';
import type { Sequence } from '../data/types.ts';
import { bytesSource } from '../io/byte-source.ts';
import { memoryStore } from '../io/cache.ts';
import { SafetensorsFile, writeSafetensors, type DType, type TensorToWrite } from '../io/safetensors.ts';
import { CheckpointStore, decodeCheckpoint, encodeCheckpoint, type CheckpointState } from '../train/checkpoint.ts';
import { fuzz, mutatedBytes, refusedOr } from './harness.ts';

const NAME = 'checkpoint/current/blob/1-1';
type Info = { step: number; savedAt: number; modelKey: string };

const sequence: fc.Arbitrary<Sequence> = fc.array(fc.nat(8), { maxLength: 3 }).chain((segs) => {
  const n = segs.reduce((a, b) => a + b, 0);
  const ids = fc.array(fc.integer({ min: -100, max: 50000 }), { minLength: n, maxLength: n });
  return fc.tuple(ids, ids).map(([a, b]) => ({
    input_ids: Int32Array.from(a), labels: Int32Array.from(b),
    position_ids: Int32Array.from(segs.flatMap((s) => Array.from({ length: s }, (_, i) => i))), seq_lengths: segs,
  }));
});
const f32 = (n: number) => fc.array(fc.float({ noNaN: true }), { minLength: n, maxLength: n }).map((a) => Float32Array.from(a));

const state: fc.Arbitrary<CheckpointState<Info>> = fc.nat(16).chain((n) => fc.record({
  info: fc.record({ step: fc.nat(), savedAt: fc.nat(), modelKey: fc.string() }),
  position: fc.record({ step: fc.nat(), epoch: fc.nat(), micro: fc.nat() }),
  loraStep: fc.nat(),
  logs: fc.array(fc.record({ step: fc.nat(), epoch: fc.nat(), loss: fc.double({ noNaN: true, noDefaultInfinity: true }).map((x) => x + 0) /* JSON has no -0 */, lr: fc.double({ min: 0, max: 1, noNaN: true }), grad_norm: fc.double({ min: 0, max: 10, noNaN: true }), tokens: fc.nat(), tokens_per_s: fc.double({ min: 0, max: 1e6, noNaN: true }) }), { maxLength: 3 }),
  params: f32(n), m: f32(n), v: f32(n),
  train: fc.array(sequence, { maxLength: 3 }),
  validation: fc.array(sequence, { maxLength: 2 }),
}));

/** What any decoded checkpoint must satisfy before the trainer uploads it. */
function checkState(s: CheckpointState<Info>): void {
  expect(s.params.length === s.m.length && s.m.length === s.v.length).toBe(true);
  expect(Number.isSafeInteger(s.loraStep) && s.loraStep >= 0).toBe(true);
  expect(typeof s.info === 'object' && s.info !== null && Number.isSafeInteger(s.info.step)).toBe(true);
  expect(typeof s.position === 'object' && s.position !== null).toBe(true);
  expect(['step', 'epoch', 'micro'].every((k) => Number.isSafeInteger((s.position as unknown as Record<string, unknown>)[k]))).toBe(true);
  expect(Array.isArray(s.logs)).toBe(true);
  for (const q of [...s.train, ...s.validation]) {
    const n = q.input_ids.length;
    expect(q.labels.length === n && q.position_ids.length === n).toBe(true);
    expect(q.seq_lengths.every((x) => Number.isSafeInteger(x) && x >= 0)).toBe(true);
    expect(q.seq_lengths.reduce((a, b) => a + b, 0)).toBe(n);
  }
}

fuzz('checkpoint round trip', state, async (s) => {
  const back = await decodeCheckpoint<Info>(encodeCheckpoint(s), NAME);
  expect(back).toEqual(s);
  checkState(back);
});

fuzz('checkpoint bytes damaged', mutatedBytes(state.map((s) => encodeCheckpoint(s))), async (bytes) => {
  const s = await refusedOr(NAME, () => decodeCheckpoint<Info>(bytes, NAME));
  if (s) checkState(s);
});

/** A checkpoint rewritten with some tensors of another dtype or length, some removed, and some
 *  metadata values replaced: what a bug in an older version, or a hand-edited file, looks like. */
const rewrite = fc.tuple(
  state,
  fc.array(fc.tuple(fc.nat(20), fc.constantFrom<DType | 'drop'>('drop', 'I32', 'F32', 'U8', 'F16', 'I64'), fc.integer({ min: -3, max: 3 })), { maxLength: 3 }),
  fc.array(fc.tuple(fc.constantFrom('format', 'info', 'position', 'lora_step', 'logs'), fc.oneof(fc.constantFrom('', 'null', '[]', '{}', '-1', '1.5', 'NaN', '1e999', '"x"', '{"step":"a"}', 'webtune-checkpoint-1'), fc.string())), { maxLength: 2 }),
);

fuzz('checkpoints with tensors of the wrong dtype or length and metadata of the wrong type', rewrite, async ([s, tensorEdits, metaEdits]) => {
  const f = await SafetensorsFile.open(bytesSource(NAME, encodeCheckpoint(s)));
  const tensors = new Map<string, TensorToWrite>();
  for (const t of f.tensors) tensors.set(t.name, { dtype: t.dtype, shape: t.shape, data: await f.readBytes(t.name) });
  const names = [...tensors.keys()];
  for (const [i, dtype, delta] of tensorEdits) {
    const name = names[i % names.length];
    if (dtype === 'drop') {
      tensors.delete(name);
      continue;
    }
    const n = Math.max(0, (tensors.get(name)?.shape[0] ?? 0) + delta);
    const size = dtype === 'U8' ? 1 : dtype === 'F16' ? 2 : dtype === 'I64' ? 8 : 4;
    tensors.set(name, { dtype, shape: [n], data: new Uint8Array(n * size).fill(delta & 0xff) });
  }
  const meta = { ...f.metadata };
  for (const [k, v] of metaEdits) meta[k] = v;
  const decoded = await refusedOr(NAME, () => decodeCheckpoint<Info>(writeSafetensors(tensors, meta), NAME));
  if (decoded) checkState(decoded);
});

fuzz('checkpoint store manifest of any shape', fc.tuple(state, fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.record({ blob: fc.constantFrom(NAME, 'other'), bytes: fc.oneof(fc.nat(), fc.constant(-1)), sha256: fc.string(), info: fc.jsonValue({ maxDepth: 1 }) }))), async ([s, manifest]) => {
  const store = memoryStore();
  const cks = new CheckpointStore<Info>(store);
  store.data.set(NAME, encodeCheckpoint(s));
  store.data.set('checkpoint/current/manifest', structuredClone(manifest));
  await cks.info();
  // A refusal names the manifest or the blob it points at.
  const got = await refusedOr(['checkpoint/current/manifest', NAME, 'other'], () => cks.load());
  if (got) checkState(got);
});

// Failures the fuzzer found, kept as named cases (seed and path from the run that found them).
describe('checkpoint fuzz regressions', () => {
  const valid = (): CheckpointState<Info> => ({
    info: { step: 1, savedAt: 2, modelKey: 'demo:nf4' }, position: { step: 1, epoch: 0, micro: 1 }, loraStep: 1, logs: [],
    params: new Float32Array(2), m: new Float32Array(2), v: new Float32Array(2),
    train: [{ input_ids: Int32Array.of(1, 2, 3), labels: Int32Array.of(-100, 2, 3), position_ids: Int32Array.of(0, 1, 0), seq_lengths: [2, 1] }],
    validation: [],
  });
  async function rewritten(edit: (t: Map<string, TensorToWrite>, meta: Record<string, string>) => void): Promise<unknown> {
    const f = await SafetensorsFile.open(bytesSource(NAME, encodeCheckpoint(valid())));
    const t = new Map<string, TensorToWrite>();
    for (const x of f.tensors) t.set(x.name, { dtype: x.dtype, shape: x.shape, data: await f.readBytes(x.name) });
    const meta = { ...f.metadata };
    edit(t, meta);
    return decodeCheckpoint(writeSafetensors(t, meta), NAME).catch((e: unknown) => e);
  }
  const refused = (e: unknown, why: RegExp) => {
    expect(e).toBeInstanceOf(ModelFileError);
    expect((e as ModelFileError).details.file).toBe(NAME);
    expect((e as ModelFileError).message).toMatch(why);
  };

  test('segment lengths that do not add up to the sequence are refused (seed 702026435, path 99)', async () => {
    refused(await rewritten((t) => t.set('train.segment_lengths', { dtype: 'I32', shape: [2], data: Int32Array.of(2, 5) })), /do not add up/);
  });

  test('lora_step that is not a count, and tensors of another dtype, are refused (seed -2001976487, path 7)', async () => {
    // lora_step "!" decoded as NaN, and an odd-length U8 tensor read as I32 threw a RangeError.
    refused(await rewritten((_, meta) => (meta.lora_step = '!')), /lora_step/);
    refused(await rewritten((t) => t.set('train.lengths', { dtype: 'U8', shape: [3], data: new Uint8Array(3) })), /not a list of I32/);
    refused(await rewritten((t) => t.set('lora.adam_v', { dtype: 'F32', shape: [1], data: new Float32Array(1) })), /differ in length/);
  });

  test('a store manifest that is not a manifest is a typed error, and is cleared (seed 146571207, path 0)', async () => {
    // The manifest `true` made load() read `true.info.step`: a TypeError.
    const store = memoryStore();
    const cks = new CheckpointStore<Info>(store);
    store.data.set('checkpoint/current/manifest', true);
    expect(await cks.info()).toBeNull();
    const e = await cks.load().catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ModelFileError);
    expect((e as ModelFileError).details.file).toBe('checkpoint/current/manifest');
    expect(store.data.size).toBe(0);
  });
});
