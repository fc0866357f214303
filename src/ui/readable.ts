// Turns anything thrown across the worker boundary into what a person can act on: a message, a
// hint and, where the typed error knows it, the place (file, line, tensor, field). Never a stack
// trace, never JSON. Typed errors (errors.ts) already carry a good message and hint; the other
// cases are the browser's own failures, which we translate.
import { WebtuneError } from '../errors.ts';
import type { Problem } from '../data/types.ts';

export interface Readable {
  /** Stable code for styling and tests ('dataset', 'model-file', 'quota', ...). */
  code: string;
  message: string;
  hint: string;
  /** "file.jsonl, line 7" when the error names a place. */
  where?: string;
  /** Per-row dataset problems, when the error carries them. */
  problems?: Problem[];
}

const QUOTA_HINT =
  'Free space: delete cached models you no longer need (Models → Cached), or allow this site more storage. Private windows have a much smaller quota.';

function place(details: Record<string, unknown>): string | undefined {
  const parts: string[] = [];
  if (typeof details.file === 'string') parts.push(details.file);
  if (typeof details.line === 'number') parts.push(`line ${details.line}`);
  else if (typeof details.row === 'number') parts.push(`row ${details.row}`);
  if (typeof details.tensor === 'string') parts.push(`tensor ${details.tensor}`);
  if (typeof details.field === 'string') parts.push(`field ${details.field}`);
  return parts.length ? parts.join(', ') : undefined;
}

function isProblemList(x: unknown): x is Problem[] {
  return Array.isArray(x) && x.every((p) => p && typeof p === 'object' && typeof (p as Problem).message === 'string');
}

/** A message without the engine's stack lines: "at foo (file.ts:1:2)" never reaches the page. */
function firstLines(s: string): string {
  return s
    .split('\n')
    .filter((l) => !/^\s+at\s/.test(l))
    .join('\n')
    .trim();
}

export function readable(e: unknown): Readable {
  if (e instanceof WebtuneError) {
    const problems = isProblemList(e.details.problems) ? e.details.problems : undefined;
    return { code: e.code, message: firstLines(e.message), hint: e.hint, where: place(e.details), problems };
  }
  const name = (e as { name?: unknown } | null)?.name;
  const message = (e as { message?: unknown } | null)?.message;
  if (name === 'QuotaExceededError') {
    return { code: 'quota', message: 'The browser ran out of storage for this site while saving.', hint: QUOTA_HINT };
  }
  if (name === 'AbortError') return { code: 'aborted', message: 'Cancelled.', hint: '' };
  if (typeof message === 'string' && message) {
    if (/failed to fetch|networkerror|load failed/i.test(message)) {
      return {
        code: 'network',
        message: `A download failed: ${firstLines(message)}.`,
        hint: 'Check the connection. Models already cached (listed under Cached models) load without the network.',
      };
    }
    return { code: 'unexpected', message: firstLines(message), hint: 'This looks like a bug in webtune; reloading the page usually recovers. Please report it.' };
  }
  return { code: 'unexpected', message: 'Something went wrong.', hint: 'Reloading the page usually recovers. Please report it.' };
}
