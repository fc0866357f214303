// A sample of scripts/kill-loop.mjs (npm run kill-loop runs more): the adapter save SIGKILLed before
// each of its file-system steps and at 5 random moments, on a fresh folder and over an existing
// adapter. killLoop itself throws on a mixed, partial or left-over state; here we also check that
// the sweep saw both sides of the commit point.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { killLoop } from './kill-loop.ts';

let workdir: string;
beforeAll(async () => { workdir = await mkdtemp(join(tmpdir(), 'webtune-kill-')); });
afterAll(() => rm(workdir, { recursive: true, force: true }));

// Each trial starts a Node child (about 1 s on two busy cores); three run at once.
const SAMPLE_TIMEOUT_MS = 240_000;

test('a save killed at every step or at random leaves the old adapter or the new one, whole', async () => {
  const r = await killLoop({ workdir, random: 5, everyStep: true });
  // mkdir, 3 per file (open, write, fsync) x 2, COMMIT, 2 renames, 3 fsyncs of folders, cleanup.
  expect(r.steps.fresh).toBeGreaterThanOrEqual(15);
  expect(r.steps.existing).toBe(r.steps.fresh + 1); // + removing the old version's temporary
  expect(r.kills).toBe(r.steps.fresh + r.steps.existing + 2 * 5);
  // Fresh folder: nothing before the commit point, the new adapter after it; never the old.
  expect(r.found.fresh.none).toBeGreaterThan(0);
  expect(r.found.fresh.new).toBeGreaterThan(0);
  expect(r.found.fresh.old).toBe(0);
  // Existing adapter: the old one before the commit point, the new one after; never nothing.
  expect(r.found.existing.old).toBeGreaterThan(0);
  expect(r.found.existing.new).toBeGreaterThan(0);
  expect(r.found.existing.none).toBe(0);
}, SAMPLE_TIMEOUT_MS);
