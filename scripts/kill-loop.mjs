#!/usr/bin/env node
// `npm run kill-loop [-- RANDOM]`: SIGKILLs an adapter save at RANDOM (default 30) random moments
// per scenario (a fresh folder, over an existing adapter) and before every file-system step of the
// save, and checks after each kill that the folder holds the old adapter or the new one, whole.
// Prints one line per trial, then a JSON summary. `npm test` runs a smaller sample
// (src/node/kill-loop.test.ts).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { register } from 'tsx/esm/api';

register();
const { killLoop } = await import('../src/node/kill-loop.ts');
const random = Number(process.argv[2] ?? 30);
const workdir = await mkdtemp(join(tmpdir(), 'webtune-kill-loop-'));
const t0 = performance.now();
try {
  const r = await killLoop({ workdir, random, everyStep: true, log: (l) => console.log(l) });
  console.log(JSON.stringify({ ...r, seconds: Math.round((performance.now() - t0) / 1000) }));
} finally {
  await rm(workdir, { recursive: true, force: true });
}
