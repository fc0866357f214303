// Node side of src/io: files on disk as ByteSources (one positioned read per request, so a model
// shard is never read whole), a folder as a file list for openModelFolder, and crash-safe writes.

import { open, readdir, rename, rm, stat, mkdir } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { ModelFileError } from '../errors.ts';
import { type ByteSource, checkRange, shortRead } from '../io/byte-source.ts';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE } from '../io/peft.ts';
import { importAdapter, type ImportedAdapter } from '../model/adapter.ts';
import type { DecoderDims } from '../io/hf-names.ts';
import type { StoreSource } from '../app/model-store.ts';
import { fsError } from './preflight.ts';

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
 *  partial write (through writeFilesAtomic, so the same recovery applies). */
export async function writeFileAtomic(path: string, bytes: Uint8Array): Promise<void> {
  await writeFilesAtomic(dirname(path), { [basename(path)]: bytes });
}

// ---- Publishing a set of files as one unit ------------------------------------------------------
// A PEFT adapter is two files read together. Renaming them one after the other leaves a window in
// which a kill gives the old adapter_config.json beside the new weights (a wrong alpha that still
// loads). So a save is a small redo log inside DIR:
//   1. stale staging is removed; the new files are written and fsynced into DIR/.webtune-staging/;
//   2. an empty COMMIT file is created there and the staging folder fsynced: the commit point;
//   3. each staged file is renamed over its target, and DIR fsynced;
//   4. COMMIT and the staging folder are removed.
// Before the commit point DIR's own files are untouched (the old set); after it, recoverStaged()
// finishes step 3 whatever happened, so every reader (recoverStaged runs first in adapterSources)
// sees the complete new set. Other files in DIR (a training log, a README) are never touched, which a
// swap of the whole folder could not promise. Temporaries of older webtune versions
// (.NAME.tmp-PID-RAND) are removed by the next save.

/** The staging folder of writeFilesAtomic inside the target folder. */
export const STAGING_DIR = '.webtune-staging';
const COMMIT = 'COMMIT';
const OLD_TEMP = /^\..+\.tmp-\d+-[0-9a-f]{8}$/; // `.${name}.tmp-${pid}-${4 random bytes in hex}`

// Test seam: WEBTUNE_KILL_AT_FS_STEP=N makes the process SIGKILL itself just before the Nth
// file-system step of a save (src/node/kill-loop.ts kills at every step this way). Unset: no effect.
const killAtStep = Number(process.env.WEBTUNE_KILL_AT_FS_STEP ?? 0) || 0;
let fsSteps = 0;
function fsStep(): void {
  if (++fsSteps === killAtStep) process.kill(process.pid, 'SIGKILL');
}
/** File-system steps taken by saves so far in this process (the kill loop's step count). */
export const savedFsSteps = (): number => fsSteps;

async function fsyncPath(path: string): Promise<void> {
  fsStep();
  try {
    const h = await open(path, 'r');
    try {
      await h.sync();
    } finally {
      await h.close();
    }
  } catch {
    /* a folder's own durability is best effort (Windows cannot open a directory to fsync it) */
  }
}

const isMissing = (e: unknown) => (e as NodeJS.ErrnoException).code === 'ENOENT';

/** Finishes a committed save left half-done by a crash (idempotent; safe to run while nothing is
 *  being saved, which is how readers use it). An uncommitted staging folder is left for the next
 *  save to remove: it may belong to a save still in progress. */
export async function recoverStaged(dir: string): Promise<void> {
  const staging = join(dir, STAGING_DIR);
  let names: string[];
  try {
    names = await readdir(staging);
  } catch (e) {
    if (isMissing(e)) return;
    throw e;
  }
  if (!names.includes(COMMIT)) return;
  for (const name of names) {
    if (name === COMMIT) continue;
    fsStep();
    try {
      await rename(join(staging, name), join(dir, name));
    } catch (e) {
      if (!isMissing(e)) throw e; // another process finished this one
    }
  }
  await fsyncPath(dir);
  fsStep();
  await rm(join(staging, COMMIT), { force: true });
  fsStep();
  await rm(staging, { recursive: true, force: true });
}

/** Several files into `dir` (created if needed) as one unit: after a crash at any point, `dir`
 *  (once recoverStaged has run) holds either all the old files or all the new ones. An error
 *  before the commit point leaves the folder as it was. */
export async function writeFilesAtomic(dir: string, files: Record<string, Uint8Array | string>): Promise<void> {
  try {
    await publish(dir, files);
  } catch (e) {
    throw fsError(e, dir);
  }
}

async function publish(dir: string, files: Record<string, Uint8Array | string>): Promise<void> {
  const staging = join(dir, STAGING_DIR);
  fsStep();
  await mkdir(dir, { recursive: true });
  await recoverStaged(dir); // a committed earlier save is finished before this one starts
  for (const name of await readdir(dir)) {
    if (OLD_TEMP.test(name)) {
      fsStep();
      await rm(join(dir, name), { force: true });
    }
  }
  fsStep();
  await rm(staging, { recursive: true, force: true });
  fsStep();
  await mkdir(staging);
  try {
    for (const [name, data] of Object.entries(files)) {
      fsStep();
      const fh = await open(join(staging, name), 'w');
      try {
        fsStep();
        await fh.writeFile(typeof data === 'string' ? new TextEncoder().encode(data) : data);
        fsStep();
        await fh.sync();
      } finally {
        await fh.close();
      }
    }
  } catch (e) {
    await rm(staging, { recursive: true, force: true });
    throw e;
  }
  await fsyncPath(staging);
  fsStep();
  await (await open(join(staging, COMMIT), 'w')).close();
  await fsyncPath(staging);
  await recoverStaged(dir);
}

/** A saved adapter's two files (adapter_config.json, adapter_model.safetensors), after finishing a
 *  save that a crash interrupted, so they always come from the same save. */
export async function adapterSources(dir: string): Promise<[config: ByteSource, weights: ByteSource]> {
  await recoverStaged(dir);
  return [await fileSource(join(dir, ADAPTER_CONFIG_FILE)), await fileSource(join(dir, ADAPTER_WEIGHTS_FILE))];
}

/** A model directory as the app layer's ModelStore reads it. */
export async function folderSource(dir: string): Promise<StoreSource> {
  return { kind: 'folder', name: basename(dir), files: await directorySources(dir) };
}

/** A PEFT adapter directory (adapter_config.json, adapter_model.safetensors), checked against the model. */
export async function adapterFromDir(dims: DecoderDims, dir: string): Promise<ImportedAdapter> {
  return importAdapter(dims, ...(await adapterSources(dir)));
}
