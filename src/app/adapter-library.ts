// The site's adapter library: several PEFT adapters per cached base model, each kept with its run
// record (src/export/run-record.ts, the same webtune-run.json the CLI writes) in the engine's
// key-value store (IndexedDB through idb-keyval in the worker, a Map in tests). An entry is two
// keys: its metadata (small, read to list the library) and its files (the PEFT bytes, read only to
// chat with, export or compare it), so listing never pulls every adapter's weights into memory.
// The files are written before the metadata: a tab closed between the two leaves files no entry
// claims (swept by `collectGarbage`), never an entry without files.
import { UsageError } from '../errors.ts';
import type { KeyValueStore } from '../io/cache.ts';
import type { RunRecord } from '../export/run-record.ts';

const PREFIX = 'adapter/';
const metaKey = (id: string) => `${PREFIX}${id}/meta`;
const filesKey = (id: string) => `${PREFIX}${id}/files`;

export interface LibraryEntry {
  id: string;
  /** Cache key of the base model it was trained on or imported for (ModelStore's cacheKey). */
  modelKey: string;
  name: string;
  /** Milliseconds since the epoch: when it was saved. */
  savedAt: number;
  origin: 'trained' | 'imported';
  /** Total bytes of its files. */
  bytes: number;
  rank: number;
  targets: string[];
  /** The run that made it; null for an adapter imported without webtune-run.json. */
  record: RunRecord | null;
}

export interface NewEntry {
  modelKey: string;
  name: string;
  origin: LibraryEntry['origin'];
  rank: number;
  targets: string[];
  record: RunRecord | null;
  /** PEFT files by name (adapter_config.json, adapter_model.safetensors). */
  files: Record<string, Uint8Array>;
}

const MAX_NAME = 120;

function cleanName(name: string): string {
  const n = name.trim().replace(/\s+/g, ' ');
  if (!n) throw new UsageError('An adapter needs a name.', 'Type at least one character.', { field: 'name' });
  if (n.length > MAX_NAME) throw new UsageError(`The name is ${n.length} characters long.`, `Use at most ${MAX_NAME}.`, { field: 'name' });
  return n;
}

function isEntry(m: unknown, id: string): m is LibraryEntry {
  const e = m as Partial<LibraryEntry> | null;
  return typeof e === 'object' && e !== null && e.id === id && typeof e.modelKey === 'string' && typeof e.name === 'string'
    && typeof e.savedAt === 'number' && typeof e.bytes === 'number' && Array.isArray(e.targets);
}

export class AdapterLibrary {
  constructor(
    private readonly store: KeyValueStore,
    /** Ids and times are injectable so tests are deterministic. */
    private readonly clock: { now(): number; id(): string } = { now: () => Date.now(), id: () => crypto.randomUUID() },
  ) {}

  /** Entries, newest first; with `modelKey`, only that base model's. Malformed entries are left out. */
  async list(modelKey?: string): Promise<LibraryEntry[]> {
    const out: LibraryEntry[] = [];
    for (const k of await this.store.keys()) {
      if (!k.startsWith(PREFIX) || !k.endsWith('/meta')) continue;
      const m = await this.store.get<unknown>(k);
      if (isEntry(m, k.slice(PREFIX.length, -'/meta'.length)) && (modelKey === undefined || m.modelKey === modelKey)) out.push(m);
    }
    return out.sort((a, b) => b.savedAt - a.savedAt || a.name.localeCompare(b.name));
  }

  async get(id: string): Promise<LibraryEntry> {
    const m = await this.store.get<unknown>(metaKey(id));
    if (!isEntry(m, id)) throw new UsageError(`No adapter "${id}" in the library.`, 'It may have been deleted in another tab; refresh the list.', { id });
    return m;
  }

  async add(e: NewEntry): Promise<LibraryEntry> {
    const id = this.clock.id();
    const bytes = Object.values(e.files).reduce((s, f) => s + f.byteLength, 0);
    const entry: LibraryEntry = {
      id, modelKey: e.modelKey, name: cleanName(e.name), savedAt: this.clock.now(), origin: e.origin, bytes,
      rank: e.rank, targets: [...e.targets], record: e.record,
    };
    await this.store.set(filesKey(id), { ...e.files });
    try {
      await this.store.set(metaKey(id), entry);
    } catch (err) {
      await this.store.del(filesKey(id)).catch(() => {});
      throw err;
    }
    return entry;
  }

  async rename(id: string, name: string): Promise<LibraryEntry> {
    const entry = { ...(await this.get(id)), name: cleanName(name) };
    await this.store.set(metaKey(id), entry);
    return entry;
  }

  /** Deletes an entry: the metadata first, so a crash midway leaves orphan files, never an entry
   *  without them. */
  async remove(id: string): Promise<void> {
    await this.get(id);
    await this.store.del(metaKey(id));
    await this.store.del(filesKey(id));
  }

  async files(id: string): Promise<Record<string, Uint8Array>> {
    await this.get(id);
    const f = await this.store.get<Record<string, Uint8Array>>(filesKey(id));
    if (!f) throw new UsageError(`The files of adapter "${id}" are missing from browser storage.`, 'Delete the entry and import the adapter again.', { id });
    return f;
  }

  /** Removes files no entry claims (a tab closed between the two writes of `add`). */
  async collectGarbage(): Promise<string[]> {
    const all = new Set(await this.store.keys());
    const dropped: string[] = [];
    for (const k of all) {
      if (!k.startsWith(PREFIX) || !k.endsWith('/files')) continue;
      const id = k.slice(PREFIX.length, -'/files'.length);
      if (!all.has(metaKey(id))) {
        await this.store.del(k);
        dropped.push(id);
      }
    }
    return dropped;
  }
}

/** A default name for a new entry: the dataset and the final loss, or the time for an import. */
export function defaultName(record: RunRecord | null, when: Date): string {
  const stamp = when.toISOString().slice(0, 16).replace('T', ' ');
  if (!record) return `Imported adapter ${stamp}`;
  const loss = record.final.loss === null ? '' : `, loss ${record.final.loss.toFixed(3)}`;
  return `${record.dataset.file.replace(/\.[^.]+$/, '')} · ${record.final.step} steps${loss}`;
}
