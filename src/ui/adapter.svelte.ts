// Export and import of PEFT adapters, and the metrics CSV. Downloads are made in the page from the
// bytes the engine hands back (a Blob per file); nothing is uploaded anywhere.
import type { Engine } from './engine.ts';
import { readable, type Readable } from './readable.ts';

export type AdapterPhase = 'idle' | 'exporting' | 'exported' | 'importing' | 'imported' | 'failed';

export function download(name: string, data: BlobPart, type: string): void {
  const url = URL.createObjectURL(new Blob([data], { type }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.style.display = 'none';
  document.body.append(a);
  a.click();
  a.remove();
  // Revoke once the download has surely started: revoking before Chrome has resolved the URL can
  // cancel the download, and the page gets no event to wait for. The 10 s this once allowed is a
  // delay a busy machine could outrun; two minutes costs only the blob's memory for that long.
  setTimeout(() => URL.revokeObjectURL(url), 120_000);
}

export class Adapter {
  phase = $state<AdapterPhase>('idle');
  error = $state<Readable | undefined>();
  exported = $state<string[]>([]);
  imported = $state<{ rank: number; targets: string[] } | undefined>();

  constructor(private readonly engine: Engine) {}

  async export(prefix: string): Promise<void> {
    this.phase = 'exporting';
    this.error = undefined;
    try {
      const files = await this.engine.exportAdapter();
      for (const [name, bytes] of Object.entries(files)) {
        const type = name.endsWith('.json') ? 'application/json' : 'application/octet-stream';
        download(`${prefix}${name}`, bytes as Uint8Array<ArrayBuffer>, type);
      }
      this.exported = Object.keys(files);
      this.phase = 'exported';
    } catch (e) {
      this.error = readable(e);
      this.phase = 'failed';
    }
  }

  async import(files: File[]): Promise<boolean> {
    this.phase = 'importing';
    this.error = undefined;
    try {
      this.imported = await this.engine.importAdapter(files);
      this.phase = 'imported';
      return true;
    } catch (e) {
      this.error = readable(e);
      this.phase = 'failed';
      return false;
    }
  }

  async metrics(name: string, csv: () => Promise<string>): Promise<void> {
    try {
      download(name, await csv(), 'text/csv');
    } catch (e) {
      this.error = readable(e);
    }
  }
}
