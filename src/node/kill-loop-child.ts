// The child process of kill-loop.ts: publishes the files of SET_DIR into DIR with writeFilesAtomic,
// the save `webtune train --out DIR` uses, and says when the save starts and how long it took. The
// parent kills it at random moments (after "saving") or at a chosen file-system step
// (WEBTUNE_KILL_AT_FS_STEP, read by fs-source.ts).
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { savedFsSteps, writeFilesAtomic } from './fs-source.ts';

const [dir, setDir] = process.argv.slice(2);
const files: Record<string, Uint8Array> = {};
for (const name of await readdir(setDir)) files[name] = await readFile(join(setDir, name));
process.stdout.write('saving\n');
const t0 = performance.now();
await writeFilesAtomic(dir, files);
process.stdout.write(`saved ${(performance.now() - t0).toFixed(2)} ms, ${savedFsSteps()} steps\n`);
