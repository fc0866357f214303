// The fuzzing harness shared by src/fuzz/*.fuzz.test.ts: fast-check properties with a run count from
// the environment, a seed that is always printed, and every case bounded in time.
//
//   FUZZ_RUNS      cases per parser (npm test: 1,000; npm run fuzz: 100,000)
//   FUZZ_SEED      replay a failure: fast-check prints "seed" and "path" on failure, and
//   FUZZ_PATH      FUZZ_SEED=<seed> FUZZ_PATH=<path> re-runs exactly that case (then shrinks it)
//   FUZZ_DEADLINE_MS  one case's time budget (default 1,000 ms, RELIABILITY G2's "1 s per input")
//
// Three time bounds, because a case can be slow in three ways:
// - it finishes, but late: the case's CPU time is measured and over the deadline it fails, with
//   fast-check's seed and path (CPU time, not wall time: on a shared 2-core machine a case can wait
//   for a core far longer than it runs, and that must not fail it);
// - its promise never settles (an await that waits forever): fast-check's `timeout` fails it;
// - it spins synchronously (an infinite loop): nothing on this thread can run, so a watchdog
//   thread sees the case's start time go stale, writes the target, seed and path straight to
//   file descriptor 2 and kills the process; the test run then fails with that line in its output.
import fc from 'fast-check';
import { writeSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { test } from 'vitest';
import { WebtuneError } from '../errors.ts';

const DEFAULT_RUNS = 1000;
export const FUZZ_RUNS = Number(process.env.FUZZ_RUNS ?? DEFAULT_RUNS);
export const CASE_DEADLINE_MS = Number(process.env.FUZZ_DEADLINE_MS ?? 1000);
/** A case this late (wall time) is taken to be spinning for good. Generous, because the watchdog
 *  kills the process: cases take milliseconds, so only a real hang gets anywhere near it. */
const HANG_MS = Math.max(30_000, 30 * CASE_DEADLINE_MS);

/** [0] = the current case's start (ms since time origin, 0 = none running), shared with the watchdog. */
const clock = new Float64Array(new SharedArrayBuffer(8));
let watchdog: Worker | null = null;

function startWatchdog(): Worker {
  if (watchdog) return watchdog;
  // Plain JS evaluated in the worker: it shares `clock` and `performance.timeOrigin` with us.
  const code = `
    const { workerData, parentPort } = require('node:worker_threads');
    const { writeSync } = require('node:fs');
    const clock = new Float64Array(workerData.sab);
    let label = '';
    let origin = workerData.origin;
    parentPort.on('message', (m) => { label = m; });
    setInterval(() => {
      const start = clock[0];
      if (start > 0 && Date.now() - (origin + start) > workerData.hangMs) {
        writeSync(2, '\\nFUZZ HANG: ' + label + ' ran over ' + workerData.hangMs + ' ms without returning (a synchronous loop). Replay with the seed and path above.\\n');
        process.kill(process.pid, 'SIGKILL');
      }
    }, 200).unref();
  `;
  watchdog = new Worker(code, { eval: true, workerData: { sab: clock.buffer, origin: performance.timeOrigin, hangMs: HANG_MS } });
  watchdog.unref();
  return watchdog;
}

/** A fixed seed per target for `npm test` (the same 1,000 cases every time, so a red run is a real
 *  regression, not luck), a fresh one for long campaigns, or FUZZ_SEED to replay. */
function seedFor(name: string): number {
  if (process.env.FUZZ_SEED) return Number(process.env.FUZZ_SEED);
  if (FUZZ_RUNS > DEFAULT_RUNS) return (Date.now() ^ (Math.random() * 2 ** 31)) | 0;
  let h = 2166136261;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 16777619);
  return h | 0;
}

/**
 * Registers one fuzz target as a vitest test. `check` gets one generated input and must either
 * return (after asserting what it can about the result) or throw; use `expectTyped` for the errors
 * the parser is allowed to raise.
 */
const unhandled: unknown[] = [];
process.on('unhandledRejection', (reason) => void unhandled.push(reason));

export function fuzz<T>(name: string, arb: fc.Arbitrary<T>, check: (input: T) => Promise<void> | void, runs = FUZZ_RUNS): void {
  // Long campaigns need time in proportion; npm test's 1,000 cases finish in seconds.
  const budget = Math.max(120_000, runs * 20);
  test(`fuzz: ${name} (${runs} cases)`, async () => {
    const dog = startWatchdog();
    const seed = seedFor(name);
    let k = 0;
    const started = performance.now();
    const property = fc.asyncProperty(arb, async (input) => {
      // Path "k" is the k-th generated case before shrinking: enough to replay a hang.
      dog.postMessage(`${name}: seed ${seed}, path ${process.env.FUZZ_PATH ?? k}`);
      k++;
      // Replaying one case: show it first, so a hang that kills the process still shows its input.
      if (process.env.FUZZ_PATH !== undefined) writeSync(2, `fuzz: ${name}: replaying ${fc.stringify(input)}\n`);
      const cpu0 = process.cpuUsage();
      clock[0] = performance.now();
      try {
        await check(input);
        // A promise the parser dropped fails later, outside any await: give Node a turn to report
        // it, and blame this case.
        await new Promise((r) => setImmediate(r));
        if (unhandled.length > 0) throw new Error(`${name}: unhandled rejection: ${String(unhandled.splice(0).at(-1))}`);
      } finally {
        clock[0] = 0;
      }
      const used = process.cpuUsage(cpu0);
      const ms = (used.user + used.system) / 1000;
      if (ms > CASE_DEADLINE_MS) throw new Error(`${name}: one case took ${ms.toFixed(0)} ms of CPU, over the ${CASE_DEADLINE_MS} ms deadline`);
    });
    await fc.assert(property, {
      numRuns: runs,
      seed,
      path: process.env.FUZZ_PATH,
      timeout: HANG_MS,
    });
    if (runs > DEFAULT_RUNS) {
      // Campaign numbers for the report (npm test stays quiet).
      writeSync(1, `fuzz: ${name}: ${runs} cases, seed ${seed}, ${((performance.now() - started) / 1000).toFixed(1)} s, no failure\n`);
    }
  }, budget);
}

/**
 * The only failure a parser may raise: a WebtuneError that names the place (`place`: the file name
 * the parser was given). Anything else is rethrown unchanged so fast-check reports it with its stack.
 */
export function expectTyped(e: unknown, place: string | string[]): void {
  if (!(e instanceof WebtuneError)) throw e;
  const places = typeof place === 'string' ? [place] : place;
  const named = places.some((p) => e.message.includes(p) || Object.values(e.details).some((v) => v === p));
  if (!named) throw new Error(`typed error does not name ${places.map((p) => `"${p}"`).join(' or ')}: ${e.name}: ${e.message}`);
  if (e.hint.length === 0) throw new Error(`typed error without a hint: ${e.message}`);
}

/** Runs `f`; a typed error naming `place` counts as a clean refusal (returns undefined). */
export async function refusedOr<R>(place: string | string[], f: () => Promise<R> | R): Promise<R | undefined> {
  try {
    return await f();
  } catch (e) {
    expectTyped(e, place);
    return undefined;
  }
}

/** Byte-level mutations of a valid input: flips, overwrites, insertions, deletions, truncation and
 *  extension, a few at a time (what a damaged download or disk does). */
export function mutatedBytes(valid: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Uint8Array> {
  const edit = fc.oneof(
    fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.nat(7) }),
    fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: fc.nat(255) }),
    fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
    fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), n: fc.integer({ min: 1, max: 16 }) }),
    fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  );
  return fc.tuple(valid, fc.array(edit, { minLength: 1, maxLength: 4 })).map(([bytes, edits]) => {
    let b = bytes;
    for (const e of edits) {
      const at = b.length === 0 ? 0 : e.at % (b.length + (e.kind === 'insert' ? 1 : 0));
      if (e.kind === 'flip' && b.length > 0) (b = b.slice())[at] ^= 1 << e.bit;
      else if (e.kind === 'set' && b.length > 0) (b = b.slice())[at] = e.value;
      else if (e.kind === 'insert') b = concat(b.subarray(0, at), e.bytes, b.subarray(at));
      else if (e.kind === 'delete') b = concat(b.subarray(0, at), b.subarray(at + e.n));
      else if (e.kind === 'truncate') b = b.slice(0, at);
    }
    return b;
  });
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Strings that are known to trip JavaScript parsers: prototype keys, empty, control characters,
 *  lone surrogates, long runs. Mixed with ordinary unicode strings. */
export const nastyString: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.string({ unit: 'binary', maxLength: 24 }) },
  { weight: 1, arbitrary: fc.constantFrom('', '__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', '__metadata__', '\u0000', '\ud800', '"', '\\', '\n', '\r\n', ',', '\t') },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme-ascii', maxLength: 8 }) },
);

/** A record arbitrary's value with its `undefined` fields removed: generators give each field an
 *  "absent" choice this way, so most cases have most fields (fc.record's optional keys are each
 *  left out half the time, and a config then almost never gets past its first missing field). */
export function dropUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
