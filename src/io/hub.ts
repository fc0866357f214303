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
  loaded: number;
  total: number;
  bytesPerSecond: number;
}

export interface HttpOptions {
  fetch?: Fetch;
  headers?: Record<string, string>;
  /** Bytes received so far for this file (all its range reads together), with the mean rate. */
  onProgress?: (p: DownloadProgress) => void;
  /** Transient failures (network errors, 5xx) are retried this many times with a short backoff. */
  retries?: number;
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

async function request(url: string, file: string, init: RequestInit, o: HttpOptions): Promise<Response> {
  const f = o.fetch ?? ((u: string, i?: RequestInit) => fetch(u, i));
  const retries = o.retries ?? 2;
  for (let attempt = 0; ; attempt++) {
    let res: Response;
    try {
      res = await f(url, init);
    } catch (e) {
      if (attempt < retries) {
        await new Promise((r) => setTimeout(r, 250 * 2 ** attempt));
        continue;
      }
      throw new ModelFileError(`${file}: the download failed (${e instanceof Error ? e.message : String(e)}).`,
        'Check the network connection and try again. A model loaded once is cached and needs no network.',
        { file, url, reason: 'network' });
    }
    if (res.status >= 500 && attempt < retries) {
      await new Promise((r) => setTimeout(r, 250 * 2 ** attempt));
      continue;
    }
    return res;
  }
}

/** Reads a response body, reporting each chunk (fetch gives no progress otherwise). */
async function readBody(res: Response, onChunk: (n: number) => void): Promise<Uint8Array> {
  if (!res.body) {
    const b = new Uint8Array(await res.arrayBuffer());
    onChunk(b.length);
    return b;
  }
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    n += value.length;
    onChunk(value.length);
  }
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(n);
  let at = 0;
  for (const c of chunks) {
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

/**
 * A ByteSource over HTTP Range requests. The first request (bytes=0-0) learns the size; a 404 gives
 * null when `optional`. Each read is one request for exactly the bytes asked for.
 */
export async function httpSource(url: string, file: string, o: HttpOptions = {}, optional = false): Promise<ByteSource | null> {
  const headers = { ...o.headers };
  const probe = await request(url, file, { headers: { ...headers, Range: 'bytes=0-0' } }, o);
  if (probe.status === 404 && optional) return null;
  if (!probe.ok) throw httpError(file, url, probe.status);
  const t0 = performance.now();
  let loaded = 0;
  const report = (n: number, total: number) => {
    loaded += n;
    const s = (performance.now() - t0) / 1000;
    o.onProgress?.({ file, loaded, total, bytesPerSecond: s > 0 ? loaded / s : 0 });
  };
  if (probe.status !== 206) {
    // No range support: this response already carries the whole file.
    const total = Number(probe.headers.get('content-length') ?? 0);
    const body = await readBody(probe, (n) => report(n, total || n));
    return bytesSource(file, body);
  }
  const size = totalFromContentRange(probe.headers.get('content-range'));
  await probe.body?.cancel().catch(() => {});
  if (size === null) {
    throw new ModelFileError(`${file}: the server gave no file size (Content-Range).`, 'The server does not support range requests properly.', { file, url, reason: 'http' });
  }
  let whole: Uint8Array | null = null; // set if the server turns out to ignore Range after all
  return {
    name: file,
    size,
    async read(offset: number, length: number): Promise<Uint8Array> {
      checkRange({ name: file, size }, offset, length);
      if (length === 0) return new Uint8Array(0);
      if (whole) return whole.slice(offset, offset + length);
      const res = await request(url, file, { headers: { ...headers, Range: `bytes=${offset}-${offset + length - 1}` } }, o);
      if (res.status === 200) {
        whole = await readBody(res, (n) => report(n, size));
        return whole.slice(offset, offset + length);
      }
      if (res.status !== 206) throw httpError(file, url, res.status);
      const bytes = await readBody(res, (n) => report(n, size));
      if (bytes.length !== length) {
        throw new ModelFileError(`${file}: asked for ${length} bytes at ${offset}, got ${bytes.length}.`, 'The download was cut short; try again.',
          { file, url, offset, length, got: bytes.length, reason: 'network' });
      }
      return bytes;
    },
  };
}

/** A small file read whole (config, tokenizer), or null when missing and optional. */
export async function httpText(url: string, file: string, o: HttpOptions = {}, optional = false): Promise<string | null> {
  const res = await request(url, file, { headers: { ...o.headers } }, o);
  if (res.status === 404 && optional) return null;
  if (!res.ok) throw httpError(file, url, res.status);
  const t0 = performance.now();
  const total = Number(res.headers.get('content-length') ?? 0);
  let loaded = 0;
  const body = await readBody(res, (n) => {
    loaded += n;
    const s = (performance.now() - t0) / 1000;
    o.onProgress?.({ file, loaded, total: total || loaded, bytesPerSecond: s > 0 ? loaded / s : 0 });
  });
  return new TextDecoder().decode(body);
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
export async function remoteModel(baseUrl: string, o: HttpOptions = {}): Promise<RemoteModel> {
  const texts: Record<string, string> = {};
  const files: Record<string, ByteSource> = {};
  const enc = new TextEncoder();
  for (const f of TEXT_FILES) {
    const t = await httpText(baseUrl + f.name, f.name, o, f.optional);
    if (t === null) continue;
    texts[f.name] = t;
    files[f.name] = bytesSource(f.name, enc.encode(t));
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
