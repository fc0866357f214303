// Files from drops and pickers. A dropped folder arrives as directory entries that must be walked;
// a directory picker gives a flat list with webkitRelativePath. Pickle files are refused here, before
// a byte is read, with the same explanation the engine gives (io/safetensors.ts).
import { pickleRefusal } from '../io/safetensors.ts';
import type { ModelFileError } from '../errors.ts';

const PICKLE = /\.(bin|pt|pth|ckpt|pkl|pickle)$/i;

export function isPickle(name: string): boolean {
  return PICKLE.test(name);
}

/** The refusal for a pickle dropped where a dataset belongs, or undefined for any other file. */
export function refuseDatasetPickle(name: string): ModelFileError | undefined {
  return isPickle(name) ? pickleRefusal(name, 'looks like a PyTorch checkpoint, not a dataset') : undefined;
}

/** The model folder's display name: the common top folder of the files, or the first file. */
export function folderName(files: readonly File[]): string {
  const rel = files.map((f) => (f as File & { webkitRelativePath?: string }).webkitRelativePath || f.name);
  const top = rel[0]?.includes('/') ? rel[0].split('/')[0] : undefined;
  return top && rel.every((r) => r.startsWith(`${top}/`)) ? top : (files[0]?.name ?? 'local model');
}

type Entry = FileSystemEntry;

function readAll(dir: FileSystemDirectoryEntry): Promise<Entry[]> {
  const reader = dir.createReader();
  const out: Entry[] = [];
  return new Promise((resolve, reject) => {
    // readEntries returns at most 100 entries per call; keep asking until it returns none.
    const next = () =>
      reader.readEntries((batch) => {
        if (batch.length === 0) resolve(out);
        else {
          out.push(...batch);
          next();
        }
      }, reject);
    next();
  });
}

async function walk(entry: Entry, into: File[]): Promise<void> {
  if (entry.isFile) {
    const file = await new Promise<File>((res, rej) => (entry as FileSystemFileEntry).file(res, rej));
    into.push(file);
  } else if (entry.isDirectory) {
    for (const child of await readAll(entry as FileSystemDirectoryEntry)) await walk(child, into);
  }
}

/** Every file in a drop, folders walked. Falls back to the flat file list where entries are absent. */
export async function filesFromDrop(dt: DataTransfer): Promise<File[]> {
  const entries = [...dt.items]
    .filter((i) => i.kind === 'file')
    .map((i) => i.webkitGetAsEntry?.())
    .filter((e): e is Entry => !!e);
  if (entries.length === 0 || entries.every((e) => e.isFile)) return [...dt.files];
  const out: File[] = [];
  for (const e of entries) await walk(e, out);
  return out;
}
