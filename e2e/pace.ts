// Waits sized by how fast this machine is right now. SwiftShader on a busy 2-core machine runs
// several times slower than on an idle one, so a fixed timeout either flakes under load (a 20-token
// chat answer once took more than the 60 s it was given) or waits far too long for a run that is
// stuck. Instead each long wait follows a progress signal the page shows (the step counter, the
// streamed text): it goes on while the signal moves and fails once it has stood still for longer
// than the pace measured on this same run allows for one step. Each wait for the next change also
// extends the test's timeout by that wait's budget, so a slow machine that keeps making progress is
// never cut off by the test timeout, which is left to bound what happens outside these waits.
import { expect, test } from 'playwright/test';

/** The one budget not derived from a measurement: the first progress of the whole test (pipeline
 *  compilation and planning before the first step), when nothing has been timed yet. */
const UNMEASURED_MS = 180_000;

export class Pace {
  /** Longest wait from a start to its first progress seen (compiling pipelines, loading, prefill). */
  private startMs?: number;
  /** Longest gap between two progress events seen after the first (a step, checkpoint writes included). */
  private stepMs?: number;

  /** A pace of its own that falls back on `basis` until it has measured something: the chat's first
   *  decode step is budgeted from the training's, which costs more (128 tokens forward and backward
   *  against one token forward). */
  constructor(readonly name: string, private readonly basis?: Pace) {}

  /** Longest a start may take before its first progress: three times the slowest start seen. */
  startBudget(): number {
    if (this.startMs !== undefined) return 3 * this.startMs + 30_000;
    return this.basis ? this.basis.startBudget() : UNMEASURED_MS;
  }

  /** Longest a step may take once going: five times the slowest step seen. */
  stepBudget(): number {
    if (this.stepMs !== undefined) return 5 * this.stepMs + 15_000;
    return this.basis ? this.basis.stepBudget() : this.startBudget();
  }

  noteStart(ms: number): void {
    this.startMs = Math.max(this.startMs ?? 0, ms);
  }

  noteStep(ms: number): void {
    this.stepMs = Math.max(this.stepMs ?? 0, ms);
  }

  toString(): string {
    const s = (ms?: number) => (ms === undefined ? '-' : `${(ms / 1000).toFixed(1)} s`);
    return `${this.name} pace: slowest start ${s(this.startMs)}, slowest step ${s(this.stepMs)}`;
  }
}

export interface Progress {
  /** Grows as work is done: a step number, a length of streamed text. */
  value: number;
  done: boolean;
  /** Set when the page shows the work failed: stop waiting and say why. */
  failed?: string;
}

/**
 * Waits until read() says done, re-reading on Playwright's polling schedule. The first change must
 * come within the pace's start budget (unless the work is `going` already), every later one within
 * its step budget; the gaps seen are recorded into the pace. Returns the last reading.
 */
export async function untilDone(what: string, pace: Pace, read: () => Promise<Progress>, opts: { going?: boolean } = {}): Promise<Progress> {
  let prev = await read();
  let moved = opts.going ?? false;
  let since = Date.now();
  while (!prev.done) {
    if (prev.failed !== undefined) throw new Error(`${what} failed: ${prev.failed}`);
    const budget = moved ? pace.stepBudget() : pace.startBudget();
    test.info().setTimeout(test.info().timeout + budget);
    let next = prev;
    await expect
      .poll(async () => (next = await read()), {
        timeout: budget,
        message: `${what}: no progress for ${(budget / 1000).toFixed(0)} s at ${prev.value} (${pace})`,
      })
      .not.toEqual(prev);
    const now = Date.now();
    if (next.value !== prev.value) {
      if (moved) pace.noteStep(now - since);
      else pace.noteStart(now - since);
      moved = true;
      since = now;
    }
    prev = next;
  }
  return prev;
}
