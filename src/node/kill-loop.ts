// Kills during an adapter save, to show that the save publishes the adapter as one unit. Each trial
// starts `kill-loop-child.ts` (the real save, writeFilesAtomic) on a fresh folder or over an existing
// adapter, and SIGKILLs it either at a random moment of the save or just before its Nth file-system
// step (every N, until a save runs to the end). After each kill the folder is read the way webtune
// reads an adapter (adapterSources, which finishes a committed save first) and must hold the old
// adapter or the new one, byte for byte, never a mix and never one file without the other; a
// following save must leave no temporary behind. The old and new adapters have the same rank and a
// different alpha: the mix that loads without complaint.
import { spawn } from 'node:child_process';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ModelFileError } from '../errors.ts';
import type { DecoderDims } from '../io/hf-names.ts';
import { adapterTensorSpecs, encodeAdapter, loraConfig, ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE } from '../io/peft.ts';
import { rng } from '../rng.ts';
import { adapterSources, writeFilesAtomic } from './fs-source.ts';

const CHILD = fileURLToPath(new URL('./kill-loop-child.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

type FileSet = Record<string, Uint8Array>;
export type Found = 'old' | 'new' | 'none';

export interface KillLoopOptions {
  workdir: string;
  /** Kills at random moments, per scenario (fresh folder, existing adapter); delays that miss the
   *  save are drawn again, so this many kills happen. */
  random: number;
  /** Also kill before every file-system step of the save, per scenario. */
  everyStep: boolean;
  seed?: number;
  /** Children run at once (default 3). */
  parallel?: number;
  log?: (line: string) => void;
}

export interface KillLoopResult {
  trials: number;
  kills: number;
  /** What the folder held after each kill, by scenario. */
  found: Record<'fresh' | 'existing', Record<Found, number>>;
  /** File-system steps of one save, each killed once in the every-step sweep. */
  steps: Record<'fresh' | 'existing', number>;
  saveMs: number;
}

/** An adapter of a small model (8 layers, hidden 1024, q_proj and v_proj, rank 8: 1 MiB of weights,
 *  so a random kill often lands mid-write). */
function adapter(seed: number, alpha: number): FileSet {
  const dims: DecoderDims = { numLayers: 8, hiddenSize: 1024, intermediateSize: 2816, numHeads: 16, numKvHeads: 16, headDim: 64 };
  const cfg = loraConfig({ r: 8, loraAlpha: alpha, loraDropout: 0.05, targetModules: ['q_proj', 'v_proj'] });
  const r = rng(seed);
  const weights = new Map<string, Float32Array>();
  for (const s of adapterTensorSpecs(dims, cfg)) weights.set(s.key, Float32Array.from({ length: s.shape[0] * s.shape[1] }, () => r() - 0.5));
  return encodeAdapter(dims, cfg, weights);
}

const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && Buffer.compare(a, b) === 0;

/** What DIR holds, read as webtune reads an adapter; throws on anything but a complete old or new one. */
async function inspect(dir: string, old: FileSet | null, neu: FileSet): Promise<Found> {
  let cfg: Uint8Array, w: Uint8Array;
  try {
    const [c, ws] = await adapterSources(dir);
    cfg = await c.read(0, c.size);
    w = await ws.read(0, ws.size);
  } catch (e) {
    if (!(e instanceof ModelFileError) || old !== null) throw e;
    // A fresh folder killed before the commit point: neither file may be there.
    const names = await readdir(dir).catch(() => [] as string[]);
    if (names.includes(ADAPTER_CONFIG_FILE) || names.includes(ADAPTER_WEIGHTS_FILE)) throw new Error(`${dir}: one adapter file without the other: ${names.join(', ')}`);
    return 'none';
  }
  for (const [name, set] of [['new', neu], ['old', old]] as const) {
    if (set && same(cfg, set[ADAPTER_CONFIG_FILE]) && same(w, set[ADAPTER_WEIGHTS_FILE])) return name;
  }
  throw new Error(`${dir}: a mixed or partial adapter (config ${cfg.length} bytes, weights ${w.length} bytes match neither save)`);
}

interface ChildExit {
  killed: boolean;
  saveMs?: number;
  steps?: number;
}

/** Runs one save in a child; kills it `delayMs` after it says "saving", or lets fs-source kill it at `step`. */
function runChild(dir: string, setDir: string, kill: { delayMs?: number; step?: number }): Promise<ChildExit> {
  return new Promise((resolveExit, reject) => {
    const env = { ...process.env, WEBTUNE_KILL_AT_FS_STEP: kill.step ? String(kill.step) : '' };
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, dir, setDir], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (kill.delayMs !== undefined && out.startsWith('saving\n') && !child.killed) {
        const t = setTimeout(() => child.kill('SIGKILL'), kill.delayMs);
        child.once('exit', () => clearTimeout(t));
      }
    });
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (signal === 'SIGKILL') return resolveExit({ killed: true });
      const m = /saved ([\d.]+) ms, (\d+) steps/.exec(out);
      if (code !== 0 || !m) return reject(new Error(`save child failed (code ${code}): ${err || out}`));
      resolveExit({ killed: false, saveMs: Number(m[1]), steps: Number(m[2]) });
    });
  });
}

export async function killLoop(o: KillLoopOptions): Promise<KillLoopResult> {
  const log = o.log ?? (() => {});
  const sets = { old: adapter(1, 16), new: adapter(2, 32) };
  for (const [name, set] of Object.entries(sets)) {
    await mkdir(join(o.workdir, 'sets', name), { recursive: true });
    for (const [f, b] of Object.entries(set)) await writeFile(join(o.workdir, 'sets', name, f), b);
  }
  const newDir = join(o.workdir, 'sets', 'new');
  const result: KillLoopResult = {
    trials: 0, kills: 0, saveMs: 0, steps: { fresh: 0, existing: 0 },
    found: { fresh: { old: 0, new: 0, none: 0 }, existing: { old: 0, new: 0, none: 0 } },
  };
  let trial = 0;

  /** One trial; returns whether the child was killed. */
  const once = async (scenario: 'fresh' | 'existing', kill: { delayMs?: number; step?: number }): Promise<boolean> => {
    const dir = join(o.workdir, `trial-${++trial}`);
    await rm(dir, { recursive: true, force: true });
    const old = scenario === 'existing' ? sets.old : null;
    if (old) {
      await writeFilesAtomic(dir, old);
      // A temporary left by an older webtune's save, which the next save must clean up.
      await writeFile(join(dir, `.${ADAPTER_WEIGHTS_FILE}.tmp-4242-0badc0de`), 'partial');
    }
    const r = await runChild(dir, newDir, kill);
    result.trials++;
    const found = await inspect(dir, old, sets.new);
    if (!r.killed && found !== 'new') throw new Error(`${dir}: a finished save left ${found}`);
    if (r.killed) {
      result.kills++;
      result.found[scenario][found]++;
    }
    // The next run cleans whatever the kill left behind.
    await writeFilesAtomic(dir, sets.new);
    const names = (await readdir(dir)).sort();
    if (names.join() !== [ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE].sort().join()) throw new Error(`${dir}: leftovers after the next save: ${names.join(', ')}`);
    await rm(dir, { recursive: true, force: true });
    log(`${scenario} ${kill.step !== undefined ? `step ${kill.step}` : `after ${kill.delayMs?.toFixed(1)} ms`}: ${r.killed ? `killed, found ${found}` : 'save finished'}`);
    return r.killed;
  };

  // How long a save takes in a child and how many steps it has, so kills cover all of it.
  const cal = await runChild(join(o.workdir, 'calibrate'), newDir, {});
  result.saveMs = cal.saveMs!;
  await rm(join(o.workdir, 'calibrate'), { recursive: true, force: true });
  const r = rng(o.seed ?? 7);
  const jobs: (() => Promise<boolean>)[] = [];
  for (const scenario of ['fresh', 'existing'] as const) {
    // Over an existing adapter the save has more steps (cleaning the old temporary): N+1 must not be killed.
    const steps = cal.steps! + (scenario === 'existing' ? 1 : 0);
    if (o.everyStep) {
      for (let step = 1; step <= steps + 1; step++) {
        jobs.push(async () => {
          const killed = await once(scenario, { step });
          if (killed !== step <= steps) throw new Error(`${scenario}: the save has ${steps} steps, but step ${step} ${killed ? 'was' : 'was not'} reached`);
          return killed;
        });
      }
      result.steps[scenario] = steps;
    }
    for (let k = 0; k < o.random; k++) {
      // A delay past the end of the save kills nothing; draw again (the finished save is checked too).
      jobs.push(async () => {
        for (let attempt = 0; attempt < 5; attempt++) if (await once(scenario, { delayMs: r() * result.saveMs })) return true;
        throw new Error(`${scenario}: five random delays under ${result.saveMs} ms all came after the save finished`);
      });
    }
  }
  // A few children at once: each spends most of its life starting Node, not saving.
  let next = 0;
  await Promise.all(Array.from({ length: o.parallel ?? 3 }, async () => {
    while (next < jobs.length) await jobs[next++]();
  }));
  return result;
}
