// Model files over HTTP: the Hugging Face Hub (https://huggingface.co/{id}/resolve/{revision}/{file})
// and the demo model the site ships (a same-origin folder). Weights are never downloaded whole:
// httpSource is a ByteSource whose reads are HTTP Range requests, so the safetensors reader fetches
// the 8-byte length, the header, then one tensor at a time, and the loader quantizes each as it
// arrives. A server that ignores Range (200 instead of 206) still works: the body is read once
// and kept, which costs memory but never correctness.
//
// The access token goes only into requests we build for huggingface.co; the Fetch standard strips
// an Authorization header on the cross-origin redirect to the CDN (whatwg/fetch#1544).
import { ModelFileError } from '../errors.ts';
import { bytesSource, checkRange, type ByteSource } from './byte-source.ts';
import { INDEX_FILE, SINGLE_FILE } from './model-folder.ts';

export const HUB_URL = 'https://huggingface.co';

type Fetch = (input: string, init?: RequestInit) => Promise<Response>;

const REPO_ID = /^[A-Za-z0-9][A-Za-z0-9._-]*(\/[A-Za-z0-9][A-Za-z0-9._-]*)?$/;

/** Checks a model id ("owner/name") and returns it trimmed. */
export function checkRepoId(id: string): string {
  const t = id.trim();
  if (!REPO_ID.test(t) || t.includes('..') || t.length > 96) {
    throw new ModelFileError(`"${id}" is not a Hugging Face model id.`, 'Use the form owner/name, e.g. HuggingFaceTB/SmolLM2-135M-Instruct.', { field: 'id', id });
  }
  return t;
}

/** The folder URL files resolve against, ending in "/". Revisions may be branch names with a slash
 *  (refs/pr/1): the hub wants them percent-encoded as one path segment. */
export function hubBaseUrl(id: string, revision = 'main', hub = HUB_URL): string {
  return `${hub.replace(/\/$/, '')}/${checkRepoId(id)}/resolve/${encodeURIComponent(revision)}/`;
}

export function hubFileUrl(id: string, revision: string | undefined, file: string, hub = HUB_URL): string {
  return hubBaseUrl(id, revision, hub) + file.split('/').map(encodeURIComponent).join('/');
}

export interface DownloadProgress {
  file: string;
  /** Bytes of the file received so far. Never decreases, even when a file restarts (its ETag
   *  changed mid-download): the count then holds until the new copy passes it. */
  loaded: number;
  total: number;
  bytesPerSecond: number;
}

export interface HttpOptions {
  fetch?: Fetch;
  headers?: Record<string, string>;
  /** Bytes received so far for this file (all its range reads together), with the mean rate. */
  onProgress?: (p: DownloadProgress) => void;
  /** How many times a request is tried again after a failure that made no progress (network
   *  error, connection reset, stall, short body, 5xx, 429). Bytes received reset the count, so a
   *  flaky but moving download always finishes. Default 5. */
  retries?: number;
  /** Cancel: aborts every request in flight and starts no new one. */
  signal?: AbortSignal;
  /** A response that sends no byte for this long is a stall: it is aborted and resumed with a
   *  Range request. Default 10 s (the Hub's CDN sends continuously; a silent connection is dead). */
  stallTimeoutMs?: number;
  /** First backoff between tries (doubled each time, capped at 8 s). Default 250 ms. */
  retryDelayMs?: number;
  /** Longest Retry-After (429/503) honoured; a server asking for more is reported, not waited on.
   *  Default 60 s. */
  maxRetryAfterMs?: number;
  /** Called before each try again, so a page can say "stalled, retrying…" while it waits. */
  onRetry?: (r: RetryNotice) => void;
}

export interface RetryNotice {
  file: string;
  /** Why the last try failed ("stalled: no data for 10000 ms", "HTTP 503", …). */
  reason: string;
  /** The last try stalled (no byte for stallTimeoutMs), as opposed to failing outright. */
  stalled: boolean;
  /** Tries in a row that brought no byte, this one included. */
  attempt: number;
}

function httpError(file: string, url: string, status: number): ModelFileError {
  if (status === 401 || status === 403) {
    return new ModelFileError(`${file}: access denied (HTTP ${status}).`,
      'The model is gated or private. Accept its licence on huggingface.co and give an access token with read permission.',
      { file, url, status, reason: 'unauthorized' });
  }
  if (status === 404) {
    return new ModelFileError(`${file} was not found (HTTP 404).`, 'Check the model id and revision, and that the repository has this file.',
      { file, url, status, reason: 'missing-file' });
  }
  return new ModelFileError(`${file}: the server answered HTTP ${status}.`, 'Try again later; the hub may be busy.', { file, url, status, reason: 'http' });
}

function networkError(file: string, url: string, why: string): ModelFileError {
  return new ModelFileError(`${file}: the download failed (${why}).`,
    'Check the network connection and try again. A model loaded once is cached and needs no network.',
    { file, url, reason: 'network' });
}

function cancelled(file: string, url: string): ModelFileError {
  return new ModelFileError(`${file}: the download was cancelled.`, 'Load the model again when you want it.', { file, url, reason: 'cancelled' });
}

/** The file changed on the server between two reads of it (a new commit on the branch). */
function changedError(file: string, url: string, was: string, now: string | null): ModelFileError {
  return new ModelFileError(`${file} changed on the server while it was being read (ETag ${was} became ${now ?? 'none'}).`,
    'The repository got a new commit during the download. Load the model again; pin a commit as the revision to avoid this.',
    { file, url, reason: 'changed', etag: was, newEtag: now });
}

/** Sleeps, or rejects at once when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal | undefined, onAbort: () => Error): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(onAbort());
    const done = () => {
      signal?.removeEventListener('abort', abort);
      resolve();
    };
    const t = setTimeout(done, ms);
    const abort = () => {
      clearTimeout(t);
      reject(onAbort());
    };
    signal?.addEventListener('abort', abort, { once: true });
  });
}

/** Retry-After in ms: delay-seconds or an HTTP date (RFC 9110 §10.2.3); null when absent/unparsable. */
export function retryAfterMs(v: string | null, now = Date.now()): number | null {
  if (v === null) return null;
  if (/^\s*\d+\s*$/.test(v)) return Number(v) * 1000;
  const t = Date.parse(v);
  return Number.isNaN(t) ? null : Math.max(0, t - now);
}

/** Strong validators only: If-Range with a weak ETag must not be used (RFC 9110 §13.1.5). */
const strong = (etag: string | null) => (etag && !etag.startsWith('W/') ? etag : null);

/**
 * One HTTP exchange whose body can be read with a stall timer: the same AbortController guards
 * the wait for headers and every wait for a body chunk, and the caller's signal aborts it too.
 */
class Exchange {
  readonly ctrl = new AbortController();
  stalled = false;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private readonly unlink: () => void;

  constructor(readonly stallMs: number, signal: AbortSignal | undefined) {
    const abort = () => this.ctrl.abort();
    signal?.addEventListener('abort', abort, { once: true });
    this.unlink = () => signal?.removeEventListener('abort', abort);
    this.arm();
  }

  /** Restarts the stall timer: called when the request starts and on every chunk. */
  arm(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.stalled = true;
      this.ctrl.abort();
    }, this.stallMs);
  }

  close(): void {
    clearTimeout(this.timer);
    this.unlink();
  }
}

interface Want {
  /** First byte wanted and one past the last (null: to the end of the file). */
  start: number;
  end: number | null;
  /** The ETag the bytes must come from (If-Range); null accepts any version. */
  etag: string | null;
  /** A 200 of another version is an error (range reads of one file must not mix versions), not
   *  a restart. */
  pinned?: boolean;
}

interface Got {
  bytes: Uint8Array;
  etag: string | null;
  /** The file's total size, when the server said (Content-Range or a 200's Content-Length). */
  size: number | null;
  /** The bytes are the whole file from a 200 (the server ignored Range, or the file changed). */
  whole: boolean;
}

/**
 * Downloads bytes [start, end) of `url` through every fault the network can throw at it: network
 * errors, 5xx and 429 (with backoff, honouring Retry-After), a connection reset or a stall
 * mid-body and a body cut short (all resumed from the last byte received with a Range request and
 * If-Range, so the resumed bytes come from the same version), and a 200 answer to a resume (the
 * file changed: If-Range failed, and the 200 carries the new file whole, so the download restarts
 * on it). `onBytes(received)` reports the bytes held after each chunk (it drops on a restart).
 */
async function fetchRange(url: string, file: string, want: Want, o: HttpOptions, onBytes: (received: number, size: number | null) => void, optional = false): Promise<Got | null> {
  const f = o.fetch ?? ((u: string, i?: RequestInit) => fetch(u, i));
  const retries = o.retries ?? 5;
  const stallMs = o.stallTimeoutMs ?? 10_000;
  const baseDelay = o.retryDelayMs ?? 250;
  const maxRetryAfter = o.maxRetryAfterMs ?? 60_000;
  const signal = o.signal;
  const parts: Uint8Array[] = [];
  let got = 0;
  let etag = want.etag;
  let size: number | null = null;
  let whole = false;
  let failures = 0; // tries in a row that brought no byte

  let stalledTry = false; // set by a try that stalled, read by retry()
  const retry = async (why: string, delay?: number) => {
    if (++failures > retries) throw networkError(file, url, `${why}; gave up after ${retries + 1} tries`);
    o.onRetry?.({ file, reason: why, stalled: stalledTry, attempt: failures });
    stalledTry = false;
    await sleep(delay ?? Math.min(8000, baseDelay * 2 ** (failures - 1)), signal, () => cancelled(file, url));
  };

  for (;;) {
    if (signal?.aborted) throw cancelled(file, url);
    const from = want.start + got;
    const end = want.end;
    if (end !== null && from >= end) break;
    const headers: Record<string, string> = { ...o.headers };
    const ranged = from > 0 || end !== null;
    if (ranged) {
      headers.Range = `bytes=${from}-${end === null ? '' : end - 1}`;
      const v = strong(etag);
      if (v) headers['If-Range'] = v;
    }
    const ex = new Exchange(stallMs, signal);
    try {
      let res: Response;
      try {
        res = await f(url, { headers, signal: ex.ctrl.signal });
      } catch (e) {
        if (signal?.aborted) throw cancelled(file, url);
        stalledTry = ex.stalled;
        await retry(ex.stalled ? `no response in ${stallMs} ms` : e instanceof Error ? e.message : String(e));
        continue;
      }
      if (res.status === 404 && optional && got === 0) {
        await res.body?.cancel().catch(() => {});
        return null;
      }
      if (res.status === 429 || res.status >= 500) {
        await res.body?.cancel().catch(() => {});
        const after = retryAfterMs(res.headers.get('retry-after'));
        if (after !== null && after > maxRetryAfter) {
          throw new ModelFileError(`${file}: the server asked to wait ${Math.ceil(after / 1000)} s before trying again (HTTP ${res.status}).`,
            'The hub is rate-limiting or busy. Try again later, or give an access token (signed-in requests get higher limits).',
            { file, url, status: res.status, reason: 'http', retryAfterMs: after });
        }
        if (failures >= retries) throw httpError(file, url, res.status);
        await retry(`HTTP ${res.status}`, after ?? undefined);
        continue;
      }
      if (res.status !== 200 && res.status !== 206) {
        await res.body?.cancel().catch(() => {});
        throw httpError(file, url, res.status);
      }
      const resEtag = res.headers.get('etag');
      let expected: number | null; // bytes this body should carry
      if (res.status === 206) {
        const cr = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(res.headers.get('content-range') ?? '');
        if (!cr || Number(cr[1]) !== from) {
          await res.body?.cancel().catch(() => {});
          throw new ModelFileError(`${file}: the server sent bytes ${cr ? `${cr[1]}-${cr[2]}` : '(no Content-Range)'} when asked for ${headers.Range}.`,
            'The server does not support range requests properly.', { file, url, reason: 'http' });
        }
        if (cr[3] !== '*') size = Number(cr[3]);
        if (etag && resEtag && resEtag !== etag) {
          // A 206 from another version (a server that ignores If-Range): never mix versions. A
          // whole-file download starts over; range reads of a pinned file cannot.
          await res.body?.cancel().catch(() => {});
          if (want.pinned) throw changedError(file, url, etag, resEtag);
          parts.length = 0;
          got = 0;
          etag = null;
          onBytes(0, size);
          await retry(`the file changed (ETag ${resEtag})`); // bounded: a file that never holds still fails
          continue;
        }
        expected = Number(cr[2]) - Number(cr[1]) + 1;
      } else {
        // 200: the whole file. On a resume (If-Range failed: the ETag changed) or for a range the
        // server ignored, the bytes so far are dropped and the file starts over from this body.
        if (want.pinned && want.etag && resEtag !== want.etag) {
          await res.body?.cancel().catch(() => {});
          throw changedError(file, url, want.etag, resEtag);
        }
        const len = res.headers.get('content-length');
        expected = len !== null && /^\d+$/.test(len) ? Number(len) : null;
        size = expected;
        if (got > 0) {
          parts.length = 0;
          got = 0;
          onBytes(0, size);
        }
        whole = ranged;
        want = { ...want, start: 0, end: null };
      }
      etag = resEtag ?? etag;
      // The body, chunk by chunk, each chunk re-arming the stall timer.
      let received = 0;
      let cut: string | null = null;
      if (res.body) {
        const reader = res.body.getReader();
        try {
          for (;;) {
            const { done, value } = await reader.read();
            if (done) break;
            ex.arm();
            parts.push(value);
            got += value.length;
            received += value.length;
            onBytes(got, size);
          }
        } catch (e) {
          if (signal?.aborted) throw cancelled(file, url);
          stalledTry = ex.stalled;
          cut = ex.stalled ? `stalled: no data for ${stallMs} ms` : `connection lost (${e instanceof Error ? e.message : String(e)})`;
        } finally {
          reader.releaseLock();
        }
      } else {
        const b = new Uint8Array(await res.arrayBuffer());
        parts.push(b);
        got += b.length;
        received += b.length;
        onBytes(got, size);
      }
      if (expected !== null && received > expected) {
        throw new ModelFileError(`${file}: the server sent ${received} bytes where it announced ${expected}.`,
          'The server or a proxy in between is misbehaving; try again later.', { file, url, reason: 'http' });
      }
      if (cut === null && expected !== null && received < expected) cut = `short body: ${received} of ${expected} bytes`;
      if (cut !== null) {
        if (received > 0) failures = 0; // progress: the next failure starts a fresh count
        // Resuming a 200 whose size is unknown cannot be checked; start it over instead.
        if (res.status === 200 && expected === null) {
          parts.length = 0;
          got = 0;
          onBytes(0, size);
        }
        await retry(cut);
        continue;
      }
      if (res.status === 200 || end === null) break;
    } finally {
      ex.close();
    }
  }
  const bytes = parts.length === 1 ? parts[0] : concatParts(parts, got);
  return { bytes, etag, size: size ?? (want.end === null ? want.start + got : null), whole };
}

function concatParts(parts: Uint8Array[], n: number): Uint8Array {
  const out = new Uint8Array(n);
  let at = 0;
  for (const c of parts) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** "bytes 0-0/12345" → 12345. */
export function totalFromContentRange(v: string | null): number | null {
  const m = v ? /\/(\d+)\s*$/.exec(v) : null;
  return m ? Number(m[1]) : null;
}

/** Per-file progress: a high-water mark over everything received, so it never goes back. */
function progress(file: string, o: HttpOptions): (loaded: number, total: number) => void {
  const t0 = performance.now();
  let high = 0;
  return (loaded, total) => {
    if (loaded <= high && high > 0) return;
    high = loaded;
    const s = (performance.now() - t0) / 1000;
    o.onProgress?.({ file, loaded: high, total: Math.max(total, high), bytesPerSecond: s > 0 ? high / s : 0 });
  };
}

/**
 * A ByteSource over HTTP Range requests. The first request (bytes=0-0) learns the size and the
 * ETag; a 404 gives null when `optional`. Each read is one request for exactly the bytes asked
 * for (resumed as often as the network needs), pinned to that ETag with If-Range: a file that
 * changes on the server between reads is refused (ModelFileError reason "changed"), never mixed.
 */
export async function httpSource(url: string, file: string, o: HttpOptions = {}, optional = false): Promise<ByteSource | null> {
  const report = progress(file, o);
  let done = 0; // bytes of completed reads
  const probe = await fetchRange(url, file, { start: 0, end: 1, etag: null }, o, () => {}, optional);
  if (probe === null) return null;
  if (probe.whole) {
    // No range support: this response already carried the whole file.
    report(probe.bytes.length, probe.bytes.length);
    return bytesSource(file, probe.bytes);
  }
  const size = probe.size;
  if (size === null) {
    throw new ModelFileError(`${file}: the server gave no file size (Content-Range).`, 'The server does not support range requests properly.', { file, url, reason: 'http' });
  }
  const etag = probe.etag;
  let whole: Uint8Array | null = null; // set if the server turns out to ignore Range after all
  return {
    name: file,
    size,
    async read(offset: number, length: number): Promise<Uint8Array> {
      checkRange({ name: file, size }, offset, length);
      if (length === 0) return new Uint8Array(0);
      if (whole) return whole.slice(offset, offset + length);
      const r = (await fetchRange(url, file, { start: offset, end: offset + length, etag, pinned: true }, o, (n) => report(done + n, size)))!;
      if (r.whole) {
        // A 200: the server ignored Range, or If-Range failed because the file changed.
        if (etag && r.etag !== etag) throw changedError(file, url, etag, r.etag);
        if (r.bytes.length !== size) throw changedError(file, url, etag ?? '(none)', r.etag);
        whole = r.bytes;
        done = size;
        report(done, size);
        return whole.slice(offset, offset + length);
      }
      done += r.bytes.length;
      return r.bytes;
    },
  };
}

/** A small file read whole (config, tokenizer), or null when missing and optional. A file whose
 *  ETag changes mid-download restarts on the new version. */
export async function httpText(url: string, file: string, o: HttpOptions = {}, optional = false): Promise<string | null> {
  const report = progress(file, o);
  const r = await fetchRange(url, file, { start: 0, end: null, etag: null }, o, (n, size) => report(n, size ?? n), optional);
  if (r === null) return null;
  report(r.bytes.length, r.bytes.length);
  return new TextDecoder().decode(r.bytes);
}

export interface RemoteModel {
  /** Every file as a ByteSource, for openModelFolder (weights stream by range reads). */
  files: Record<string, ByteSource>;
  /** Texts of the small files, kept for the cache manifest. */
  texts: Record<string, string>;
}

const TEXT_FILES: { name: string; optional: boolean }[] = [
  { name: 'config.json', optional: false },
  { name: 'tokenizer.json', optional: false },
  { name: 'tokenizer_config.json', optional: false },
  { name: 'generation_config.json', optional: true },
];

/** The files of a model folder at `baseUrl` (ending in "/"): the small files whole, then
 *  model.safetensors or the index and its shards as range-read sources. */
export async function remoteModel(baseUrl: string, o: HttpOptions & { onConfig?: (text: string) => void | Promise<void> } = {}): Promise<RemoteModel> {
  const texts: Record<string, string> = {};
  const files: Record<string, ByteSource> = {};
  const enc = new TextEncoder();
  for (const f of TEXT_FILES) {
    const t = await httpText(baseUrl + f.name, f.name, o, f.optional);
    if (t === null) continue;
    texts[f.name] = t;
    files[f.name] = bytesSource(f.name, enc.encode(t));
    // config.json comes first: a model refused by its shape (too large for the device) is refused
    // here, before any other request.
    if (f.name === 'config.json') await o.onConfig?.(t);
  }
  const single = await httpSource(baseUrl + SINGLE_FILE, SINGLE_FILE, o, true);
  if (single) {
    files[SINGLE_FILE] = single;
    return { files, texts };
  }
  const index = await httpText(baseUrl + INDEX_FILE, INDEX_FILE, o, true);
  if (index === null) {
    throw new ModelFileError(`The repository has neither ${SINGLE_FILE} nor ${INDEX_FILE}; pickle weights (pytorch_model.bin) are never loaded.`,
      'Only safetensors weights are loaded; pickle files (pytorch_model.bin) can run code and are refused. Pick a repository that publishes .safetensors.',
      { file: SINGLE_FILE, reason: 'missing-file' });
  }
  files[INDEX_FILE] = bytesSource(INDEX_FILE, enc.encode(index));
  let shardNames: string[] = [];
  try {
    const wm = (JSON.parse(index) as { weight_map?: Record<string, unknown> }).weight_map ?? {};
    shardNames = [...new Set(Object.values(wm).filter((v): v is string => typeof v === 'string'))];
  } catch {
    // openModelFolder reports a malformed index with its own message.
  }
  for (const s of shardNames) {
    // Names are checked (no "..", no URLs) by openModelFolder; refuse them here too before any request.
    if (s.includes('..') || s.includes('://') || s.startsWith('/')) continue;
    const src = await httpSource(baseUrl + s.split('/').map(encodeURIComponent).join('/'), s, o);
    files[s] = src!;
  }
  return { files, texts };
}
