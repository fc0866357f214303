// Node side of src/io: files on disk as ByteSources (one positioned read per request, so a model
// shard is never read whole), a folder as a file list for openModelFolder, and crash-safe writes.

import { open, readdir, rename, rm, stat, mkdir } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { ModelFileError } from '../errors.ts';
import { type ByteSource, checkRange, shortRead } from '../io/byte-source.ts';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE } from '../io/peft.ts';
import { importAdapter, type ImportedAdapter } from '../model/adapter.ts';
import type { DecoderDims } from '../io/hf-names.ts';
import type { StoreSource } from '../app/model-store.ts';

/** A file as a ByteSource. Each read opens, reads at the offset and closes: a few hundred opens per
 *  model load cost nothing next to the reads, and no handle can leak if the caller stops early. */
export async function fileSource(path: string): Promise<ByteSource> {
  let size: number;
  try {
    const st = await stat(path);
    if (!st.isFile()) throw new Error('not a regular file');
    size = st.size;
  } catch (e) {
    throw new ModelFileError(`Cannot open ${path}: ${(e as Error).message}.`, 'Check the path.', { file: path, reason: 'missing-file' });
  }
  return {
    name: path,
    size,
    async read(offset: number, length: number): Promise<Uint8Array> {
      checkRange({ name: path, size }, offset, length);
      const out = new Uint8Array(length);
      const fh = await open(path, 'r');
      try {
        let done = 0;
        // A single read may return less than asked (large lengths, some filesystems): loop.
        while (done < length) {
          const { bytesRead } = await fh.read(out, done, length - done, offset + done);
          if (bytesRead === 0) throw shortRead(path, offset, length, done);
          done += bytesRead;
        }
      } finally {
        await fh.close();
      }
      return out;
    },
  };
}

/** The regular files directly inside `dir` as [name, source] pairs (feed to openModelFolder). */
export async function directorySources(dir: string): Promise<[string, ByteSource][]> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (e) {
    throw new ModelFileError(`Cannot read the folder ${dir}: ${(e as Error).message}.`, 'Check the --model / --adapter path.', { file: dir, reason: 'missing-file' });
  }
  const out: [string, ByteSource][] = [];
  for (const e of entries) {
    if (e.isFile() || e.isSymbolicLink()) {
      try {
        out.push([e.name, await fileSource(join(dir, e.name))]);
      } catch {
        // A dangling symlink (e.g. an unfetched git-lfs / HF cache blob) is skipped; if it was a
        // file we needed, openModelFolder names it as missing.
      }
    }
  }
  return out;
}

/** Writes `bytes` to `path` so that `path` is either the old file or the complete new one, never a
 *  partial write: write to a temporary name in the same folder, fsync, rename over the target. */
export async function writeFileAtomic(path: string, bytes: Uint8Array): Promise<void> {
  await writeFilesAtomic(dirname(path), { [basename(path)]: bytes });
}

/** Several files into `dir` (created if needed), each via temp-name-then-rename. All temporaries
 *  are written and synced before the first rename, so an error while writing leaves the folder as it
 *  was. Renames go in the given order: put the file that marks the set as valid last (an adapter's
 *  adapter_config.json after adapter_model.safetensors). */
export async function writeFilesAtomic(dir: string, files: Record<string, Uint8Array | string>): Promise<void> {
  await mkdir(dir, { recursive: true });
  const tag = `${process.pid}-${randomBytes(4).toString('hex')}`;
  const temps: [string, string][] = [];
  try {
    for (const [name, data] of Object.entries(files)) {
      const target = join(dir, name);
      const tmp = join(dir, `.${name}.tmp-${tag}`);
      temps.push([tmp, target]);
      const fh = await open(tmp, 'w');
      try {
        await fh.writeFile(typeof data === 'string' ? new TextEncoder().encode(data) : data);
        await fh.sync();
      } finally {
        await fh.close();
      }
    }
    for (const [tmp, target] of temps) await rename(tmp, target);
  } catch (e) {
    for (const [tmp] of temps) await rm(tmp, { force: true });
    throw e;
  }
  // Make the renames durable too; best effort, since some platforms cannot open a directory.
  try {
    const dh = await open(dir, 'r');
    try {
      await dh.sync();
    } finally {
      await dh.close();
    }
  } catch {
    /* durability of the directory entry is best effort (Windows cannot fsync a directory) */
  }
}

/** A model directory as the app layer's ModelStore reads it. */
export async function folderSource(dir: string): Promise<StoreSource> {
  return { kind: 'folder', name: basename(dir), files: await directorySources(dir) };
}

/** A PEFT adapter directory (adapter_config.json, adapter_model.safetensors), checked against the model. */
export async function adapterFromDir(dims: DecoderDims, dir: string): Promise<ImportedAdapter> {
  return importAdapter(dims, await fileSource(join(dir, ADAPTER_CONFIG_FILE)), await fileSource(join(dir, ADAPTER_WEIGHTS_FILE)));
}
