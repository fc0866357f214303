// The adapter library of the loaded base model: the list the engine keeps in IndexedDB (each entry
// with its run record), and the page's actions on it. Exports are downloads made in the page from
// the bytes the engine hands back, as for the current adapter (adapter.svelte.ts).
import type { AdapterExportFormat, LibraryEntry, MergedFileEvent } from '../worker/api.ts';
import { download } from './adapter.svelte.ts';
import { callback, type Engine } from './engine.ts';
import { readable, type Readable } from './readable.ts';

export type LibraryPhase = 'idle' | 'loading' | 'ready' | 'failed';

export class Library {
  phase = $state<LibraryPhase>('idle');
  entries = $state<LibraryEntry[]>([]);
  /** The entry of chat's current adapter (the trained run's or the imported one), if saved. */
  current = $state<string | null>(null);
  error = $state<Readable | undefined>();
  /** Ids with an action in flight (export, rename, delete): their buttons wait. */
  busy = $state<string[]>([]);
  /** The last export's file names, for the status line. */
  exported = $state<string[]>([]);
  /** The merged export in progress or last finished: tensors done, and where it went. */
  merging = $state<{ id: string; done: number; total: number; tensor: string; to: string; files?: string[] } | undefined>();
  /** The last upload: which entry, where to, and the commit. */
  uploaded = $state<{ id: string; url: string; commit: string | null } | undefined>();

  constructor(private readonly engine: Engine) {}

  async refresh(): Promise<void> {
    this.phase = 'loading';
    try {
      const l = await this.engine.listAdapters();
      this.entries = l.entries;
      this.current = l.current;
      this.phase = 'ready';
    } catch (e) {
      this.error = readable(e);
      this.phase = 'failed';
    }
  }

  name(id: string): string | undefined {
    return this.entries.find((e) => e.id === id)?.name;
  }

  private async act(id: string, f: () => Promise<void>): Promise<boolean> {
    if (this.busy.includes(id)) return false;
    this.busy.push(id);
    this.error = undefined;
    try {
      await f();
      return true;
    } catch (e) {
      this.error = readable(e);
      return false;
    } finally {
      this.busy = this.busy.filter((x) => x !== id);
    }
  }

  rename(id: string, name: string): Promise<boolean> {
    return this.act(id, async () => {
      const e = await this.engine.renameAdapter(id, name);
      const i = this.entries.findIndex((x) => x.id === id);
      if (i >= 0) this.entries[i] = e;
    });
  }

  remove(id: string): Promise<boolean> {
    return this.act(id, async () => {
      await this.engine.deleteAdapter(id);
      this.entries = this.entries.filter((x) => x.id !== id);
      if (this.current === id) this.current = null;
    });
  }

  /** Uploads an entry (PEFT files, run record, model card, loss curve) in one commit. The token is
   *  the caller's (the model panel's, kept in memory unless "remember" is ticked); it goes to the
   *  Hub's API only. The Hub client loads on first use. */
  upload(id: string, repo: string, token: string, opts: { private?: boolean; hubUrl?: string } = {}): Promise<boolean> {
    return this.act(id, async () => {
      this.uploaded = undefined;
      const { pushAdapter } = await import('../export/hub-upload.ts');
      const files = await this.engine.exportLibraryAdapter(id, 'peft');
      const out = await pushAdapter({ repo: repo.trim(), token: token.trim(), adapter: files, private: opts.private, hubUrl: opts.hubUrl });
      this.uploaded = { id, url: out.url, commit: out.commit };
    });
  }

  /** The base with the adapter merged in, streamed file by file: into a folder the user picks where
   *  the browser has the File System Access API (each file written through a writable that only
   *  replaces the file when closed; on failure the new folder is removed), otherwise as one download
   *  per file (each kept in memory only until its download starts). */
  exportMerged(id: string, folderName: string, picker = (globalThis as { showDirectoryPicker?: (o: object) => Promise<FileSystemDirectoryHandle> }).showDirectoryPicker): Promise<boolean> {
    return this.act(id, async () => {
      const root = picker ? await picker.call(globalThis, { mode: 'readwrite', id: 'webtune-merged' }).catch((e: unknown) => {
        if ((e as Error).name === 'AbortError') return null; // the user closed the picker
        throw e;
      }) : undefined;
      if (root === null) return;
      const dir = root ? await root.getDirectoryHandle(folderName, { create: true }) : undefined;
      this.merging = { id, done: 0, total: 0, tensor: '', to: dir ? `${root!.name}/${folderName}` : 'downloads' };
      const writers = new Map<string, FileSystemWritableFileStream>();
      const chunks = new Map<string, BlobPart[]>();
      const onFile = callback(async (e: MergedFileEvent) => {
        switch (e.type) {
          case 'progress':
            if (this.merging) Object.assign(this.merging, { done: e.done, total: e.total, tensor: e.tensor });
            break;
          case 'open':
            if (dir) writers.set(e.name, await (await dir.getFileHandle(e.name, { create: true })).createWritable());
            else chunks.set(e.name, []);
            break;
          case 'write':
            if (dir) await writers.get(e.name)!.write(e.chunk as Uint8Array<ArrayBuffer>);
            else chunks.get(e.name)!.push(e.chunk as Uint8Array<ArrayBuffer>);
            break;
          case 'close':
            if (dir) {
              await writers.get(e.name)!.close();
              writers.delete(e.name);
            } else {
              download(e.name, new Blob(chunks.get(e.name)!), e.name.endsWith('.json') ? 'application/json' : 'application/octet-stream');
              chunks.delete(e.name);
            }
            break;
        }
      });
      try {
        const r = await this.engine.exportMerged(id, onFile);
        if (this.merging) this.merging.files = r.files;
      } catch (e) {
        for (const w of writers.values()) await w.abort().catch(() => {});
        if (root) await root.removeEntry(folderName, { recursive: true }).catch(() => {});
        this.merging = undefined;
        throw e;
      }
    });
  }

  export(id: string, format: AdapterExportFormat): Promise<boolean> {
    return this.act(id, async () => {
      const files = await this.engine.exportLibraryAdapter(id, format);
      for (const [name, bytes] of Object.entries(files)) {
        const type = name.endsWith('.json') ? 'application/json' : name.endsWith('.zip') ? 'application/zip' : 'application/octet-stream';
        download(name, bytes as Uint8Array<ArrayBuffer>, type);
      }
      this.exported = Object.keys(files);
    });
  }
}
