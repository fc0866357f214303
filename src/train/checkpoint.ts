// Training checkpoints: everything a run needs to continue after a pause, a page reload or a lost GPU
// device, in one safetensors file kept in IndexedDB. Tensors: the LoRA parameters and both Adam
// moments (flat, as the GPU holds them), and the prepared dataset's token sequences (so a reload
// resumes without the user dropping the file again). The JSON metadata: options, the trainer's
// position (epoch, micro-batch, step), Adam's step count, and the step logs so the loss curve
// continues. The data order needs no cursor beyond that: each epoch's shuffle is seeded by
// (seed + epoch), so the resumed run sees exactly the batches the uninterrupted one would.
//
// Commit order (a manifest committed last, the lesson of transformers PR #27820's tmp-dir-then-rename
// checkpoints; IndexedDB has no rename): the new blob first, then the manifest that points at it
// (with its SHA-256), then the old blob is deleted. A failed write (quota) leaves the previous
// checkpoint whole and loadable. The manifest is sealed (the SHA-256 of its canonical JSON, as the
// model cache's is): its step and options are shown before the blob is read, so a changed byte there
// must be caught on its own.
import { ModelFileError } from '../errors.ts';
import { bytesSource } from '../io/byte-source.ts';
import { isQuotaError, isSealed, sealOf, sha256Hex, type KeyValueStore } from '../io/cache.ts';
import { StorageQuotaError } from '../errors.ts';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../io/safetensors.ts';
import type { Sequence } from '../data/types.ts';
import type { StepLog, TrainPosition } from './trainer.ts';

/** What the caller records about the run (the worker's CheckpointInfo); train/ does not depend on
 *  the worker, so it is generic here. */
export interface CheckpointMeta {
  step: number;
  savedAt: number;
}

export interface CheckpointState<Info extends CheckpointMeta = CheckpointMeta> {
  info: Info;
  position: TrainPosition;
  /** Completed Adam steps (bias correction). */
  loraStep: number;
  logs: StepLog[];
  params: Float32Array;
  m: Float32Array;
  v: Float32Array;
  train: Sequence[];
  validation: Sequence[];
}

const FORMAT = 'webtune-checkpoint-1';

function seqTensors(prefix: string, seqs: Sequence[]): [string, TensorToWrite][] {
  const total = seqs.reduce((s, q) => s + q.input_ids.length, 0);
  const ids = new Int32Array(total), labels = new Int32Array(total), pos = new Int32Array(total);
  const lengths = new Int32Array(seqs.length), segCounts = new Int32Array(seqs.length);
  const segs: number[] = [];
  let at = 0;
  seqs.forEach((q, i) => {
    ids.set(q.input_ids, at);
    labels.set(q.labels, at);
    pos.set(q.position_ids, at);
    at += q.input_ids.length;
    lengths[i] = q.input_ids.length;
    segCounts[i] = q.seq_lengths.length;
    segs.push(...q.seq_lengths);
  });
  const t = (data: Int32Array): TensorToWrite => ({ dtype: 'I32', shape: [data.length], data });
  return [
    [`${prefix}.input_ids`, t(ids)], [`${prefix}.labels`, t(labels)], [`${prefix}.position_ids`, t(pos)],
    [`${prefix}.lengths`, t(lengths)], [`${prefix}.segment_counts`, t(segCounts)], [`${prefix}.segment_lengths`, t(Int32Array.from(segs))],
  ];
}

export function encodeCheckpoint(s: CheckpointState<CheckpointMeta>): Uint8Array {
  const f32 = (data: Float32Array): TensorToWrite => ({ dtype: 'F32', shape: [data.length], data });
  const tensors: [string, TensorToWrite][] = [
    ['lora.params', f32(s.params)], ['lora.adam_m', f32(s.m)], ['lora.adam_v', f32(s.v)],
    ...seqTensors('train', s.train), ...seqTensors('validation', s.validation),
  ];
  return writeSafetensors(tensors, {
    format: FORMAT,
    info: JSON.stringify(s.info),
    position: JSON.stringify(s.position),
    lora_step: String(s.loraStep),
    logs: JSON.stringify(s.logs),
  });
}

export async function decodeCheckpoint<Info extends CheckpointMeta>(bytes: Uint8Array, name = 'checkpoint'): Promise<CheckpointState<Info>> {
  const fail = (why: string) => new ModelFileError(`The saved training checkpoint is unreadable: ${why}.`,
    'Start the training run again; the checkpoint was dropped.', { file: name, reason: 'checkpoint-corrupt' });
  const file = await SafetensorsFile.open(bytesSource(name, bytes));
  const meta = file.metadata ?? {};
  if (meta.format !== FORMAT) throw fail(`format "${meta.format}" is not ${FORMAT}`);
  const json = <T>(k: string): T => {
    try {
      return JSON.parse(meta[k]) as T;
    } catch {
      throw fail(`metadata "${k}" is not JSON`);
    }
  };
  // Every count below indexes into typed arrays and drives the trainer's loops, so each is checked
  // here rather than trusted (src/fuzz/checkpoint.fuzz.test.ts found the ones that were not).
  const i32 = async (n: string) => {
    const t = file.info(n);
    if (t.dtype !== 'I32' || t.shape.length !== 1) throw fail(`tensor "${n}" is ${t.dtype} [${t.shape}], not a list of I32`);
    const b = await file.readBytes(n);
    return new Int32Array(b.buffer, b.byteOffset, b.byteLength / 4);
  };
  const seqs = async (prefix: string): Promise<Sequence[]> => {
    const ids = await i32(`${prefix}.input_ids`), labels = await i32(`${prefix}.labels`), pos = await i32(`${prefix}.position_ids`);
    const lengths = await i32(`${prefix}.lengths`), counts = await i32(`${prefix}.segment_counts`), segs = await i32(`${prefix}.segment_lengths`);
    if (labels.length !== ids.length || pos.length !== ids.length || counts.length !== lengths.length) {
      throw fail(`the ${prefix} tensors disagree in length`);
    }
    const out: Sequence[] = [];
    let at = 0, sat = 0;
    for (let i = 0; i < lengths.length; i++) {
      const n = lengths[i], c = counts[i];
      if (n < 0 || c < 0 || at + n > ids.length || sat + c > segs.length) throw fail(`${prefix} sequence ${i} runs past the stored tokens`);
      const seqLengths = Array.from(segs.subarray(sat, sat + c));
      if (seqLengths.some((x) => x < 0) || seqLengths.reduce((a, x) => a + x, 0) !== n) {
        throw fail(`${prefix} sequence ${i}'s example lengths do not add up to its ${n} tokens`);
      }
      out.push({
        input_ids: ids.slice(at, at + n), labels: labels.slice(at, at + n), position_ids: pos.slice(at, at + n),
        seq_lengths: seqLengths,
      });
      at += n;
      sat += c;
    }
    if (at !== ids.length || sat !== segs.length) throw fail(`the ${prefix} tokens are not all claimed by a sequence`);
    return out;
  };
  const isCount = (v: unknown) => Number.isSafeInteger(v) && (v as number) >= 0;
  const info = json<Info>('info');
  if (typeof info !== 'object' || info === null || !isCount(info.step)) throw fail('metadata "info" has no step');
  const position = json<TrainPosition>('position');
  if (typeof position !== 'object' || position === null || !isCount(position.step) || !isCount(position.epoch) || !isCount(position.micro)) {
    throw fail('metadata "position" is not {step, epoch, micro}');
  }
  const loraStep = Number(meta.lora_step);
  if (!isCount(loraStep)) throw fail(`metadata "lora_step" is ${JSON.stringify(meta.lora_step ?? null)}, not a step count`);
  const logs = json<StepLog[]>('logs');
  if (!Array.isArray(logs)) throw fail('metadata "logs" is not a list');
  const params = await file.readFloat32('lora.params'), m = await file.readFloat32('lora.adam_m'), v = await file.readFloat32('lora.adam_v');
  if (m.length !== params.length || v.length !== params.length) throw fail('the LoRA parameters and Adam moments differ in length');
  return { info, position, loraStep, logs, params, m, v, train: await seqs('train'), validation: await seqs('validation') };
}

interface CheckpointManifest<Info> {
  blob: string;
  bytes: number;
  sha256: string;
  info: Info;
  /** SHA-256 of the canonical JSON of the other fields. */
  seal: string;
}

/** The one current checkpoint of the site (a run at a time), in a KeyValueStore. */
export class CheckpointStore<Info extends CheckpointMeta = CheckpointMeta> {
  constructor(readonly store: KeyValueStore, readonly slot = 'current') {}

  private get manifestKey(): string {
    return `checkpoint/${this.slot}/manifest`;
  }

  /** The manifest, or null when there is none or it is not one (what IndexedDB holds is untrusted). */
  private async manifest(): Promise<CheckpointManifest<Info> | null> {
    const m = await this.store.get<unknown>(this.manifestKey);
    if (m === undefined || !(await isSealed(m))) return null;
    const c = m as Partial<CheckpointManifest<Info>>;
    if (typeof c.blob === 'string' && Number.isSafeInteger(c.bytes) && typeof c.sha256 === 'string'
      && typeof c.info === 'object' && c.info !== null && Number.isSafeInteger(c.info.step)) return c as CheckpointManifest<Info>;
    return null;
  }

  async info(): Promise<Info | null> {
    return (await this.manifest())?.info ?? null;
  }

  async save(s: CheckpointState<Info>): Promise<void> {
    const bytes = encodeCheckpoint(s);
    const blob = `checkpoint/${this.slot}/blob/${s.info.savedAt}-${s.info.step}`;
    const previous = await this.manifest();
    const fields = { blob, bytes: bytes.length, sha256: await sha256Hex(bytes), info: s.info };
    const manifest: CheckpointManifest<Info> = { ...fields, seal: await sealOf(fields) };
    try {
      await this.store.set(blob, bytes);
      await this.store.set(this.manifestKey, manifest);
    } catch (e) {
      // The manifest still names the previous blob (or the write of it failed as a whole): drop
      // only the new one. Best effort: a failed delete leaves an orphan that clear() removes.
      if (blob !== previous?.blob) await this.store.del(blob).catch(() => {});
      if (isQuotaError(e)) throw new StorageQuotaError(`the training checkpoint at step ${s.info.step}`, { bytes: bytes.length, step: s.info.step });
      throw e;
    }
    // The previous blob, and any a closed tab left between writing its blob and its manifest.
    const pre = `checkpoint/${this.slot}/blob/`;
    for (const k of await this.store.keys().catch(() => [] as string[])) {
      if (k.startsWith(pre) && k !== blob) await this.store.del(k).catch(() => {});
    }
  }

  /** The checkpoint, checked against its SHA-256; a damaged one is dropped and reported. */
  async load(): Promise<CheckpointState<Info> | null> {
    const m = await this.manifest();
    if (!m) {
      if ((await this.store.get<unknown>(this.manifestKey)) === undefined) return null;
      await this.clear();
      throw new ModelFileError('The saved training checkpoint is damaged: its manifest is unreadable. It was deleted.', 'Start the training run again.',
        { file: this.manifestKey, reason: 'checkpoint-corrupt' });
    }
    const raw = await this.store.get<unknown>(m.blob);
    const bytes = raw instanceof ArrayBuffer ? new Uint8Array(raw) : raw instanceof Uint8Array ? raw : undefined;
    if (!bytes || bytes.length !== m.bytes || (await sha256Hex(bytes)) !== m.sha256) {
      await this.clear();
      throw new ModelFileError(`The saved training checkpoint (step ${m.info.step}) is damaged: ${bytes ? 'its checksum does not match' : 'its data is missing'}. It was deleted.`,
        'Start the training run again.', { file: m.blob, reason: 'checkpoint-corrupt' });
    }
    return decodeCheckpoint<Info>(bytes, m.blob);
  }

  /** Deletes the checkpoint and any orphaned blobs of this slot. */
  async clear(): Promise<void> {
    await this.store.del(this.manifestKey);
    const pre = `checkpoint/${this.slot}/`;
    for (const k of await this.store.keys()) if (k.startsWith(pre)) await this.store.del(k);
  }
}
