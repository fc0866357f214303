// A local stand-in for the Hugging Face Hub, for tests: real HTTP on 127.0.0.1 (port 0), serving a
// model folder the way huggingface.co does, with faults injected on demand.
//
// As the Hub does (observed behaviour of huggingface.co, and huggingface_hub's file_download.py):
// - GET/HEAD /{owner}/{name}/resolve/{revision}/{file}; unknown files are 404 with
//   X-Error-Code: EntryNotFound; a gated repository without the right token is 401 with
//   X-Error-Code: GatedRepo;
// - LFS files (*.safetensors) answer 302 to a content-addressed CDN path (here on the same origin),
//   with X-Linked-Etag and X-Linked-Size; small files are served directly;
// - every file has a strong ETag and X-Repo-Commit; Range (one range), If-Range and HEAD work;
// - CORS for pages on any origin (the site downloads from huggingface.co cross-origin): preflights
//   allow Authorization, Range and If-Range, and the headers the loader reads are exposed.
//
// Faults (consumed in order, each `times` times, matched by file name when its bytes are served):
// - reset:  headers and `afterBytes` bytes, then the connection is destroyed;
// - stall:  headers and `afterBytes` bytes, then nothing: the connection is held open until the
//           client gives up on it (the server never times out, so a test waits on the client);
// - short:  a body that ends cleanly after `afterBytes` bytes (a 206 with chunked encoding that
//           ends early, or a 200 whose connection is closed before its Content-Length);
// - status: an error status (503, 429) with an optional Retry-After, before any byte;
// - change: like reset, and the file gets a new version (new bytes, new ETag) at that moment, so
//           a resume with If-Range gets the new file whole.
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

export interface Fault {
  file: string;
  kind: 'reset' | 'stall' | 'short' | 'status' | 'change';
  afterBytes?: number;
  status?: number;
  retryAfter?: string;
  /** For 'change': the new content. */
  bytes?: Uint8Array;
  times?: number;
}

export interface LoggedRequest {
  method: string;
  path: string;
  file: string | null;
  range: string | null;
  ifRange: string | null;
  auth: string | null;
  status: number;
  /** ms since the server started. */
  at: number;
  fault?: Fault['kind'];
  /** The client closed the connection before the response ended. */
  aborted: boolean;
}

interface Version {
  bytes: Uint8Array;
  etag: string;
}

export interface HubServer extends EventEmitter {
  /** http://127.0.0.1:PORT */
  url: string;
  requests: LoggedRequest[];
  faults: Fault[];
  /** Responses still in progress. */
  readonly open: number;
  /** The file's current content and ETag. */
  version(file: string): Version;
  /** Back to the files on disk, no faults, an empty log (between tests). */
  reset(): void;
  /** Resolves when no response is in progress. */
  idle(): Promise<void>;
  close(): Promise<void>;
}

export interface HubServerOptions {
  /** The model folder to serve (every file in it). */
  root: string;
  repo: string;
  /** A second repository with the same files that needs `token`. */
  gatedRepo?: string;
  token?: string;
}

const COMMIT = 'c0ffee0000000000000000000000000000000000';
const CORS = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Expose-Headers': 'ETag, Content-Range, Content-Length, Accept-Ranges, X-Repo-Commit, X-Linked-Etag, X-Linked-Size, X-Error-Code',
};
const isLfs = (file: string) => file.endsWith('.safetensors');

function version(bytes: Uint8Array): Version {
  return { bytes, etag: `"${createHash('sha256').update(bytes).digest('hex')}"` };
}

export async function startHubServer(opts: HubServerOptions): Promise<HubServer> {
  const files = new Map<string, Version>();
  const load = () => {
    for (const name of readdirSync(opts.root)) files.set(name, version(new Uint8Array(readFileSync(join(opts.root, name)))));
  };
  load();
  const t0 = performance.now();
  const events = new EventEmitter();
  const requests: LoggedRequest[] = [];
  const faults: Fault[] = [];
  let open = 0;

  const takeFault = (file: string): Fault | undefined => {
    const i = faults.findIndex((f) => f.file === file);
    if (i < 0) return undefined;
    const f = faults[i];
    if ((f.times ?? 1) <= 1) faults.splice(i, 1);
    else f.times = (f.times ?? 1) - 1;
    return f;
  };

  function serveBytes(req: IncomingMessage, res: ServerResponse, log: LoggedRequest, file: string): void {
    const v = files.get(file)!;
    const fault = takeFault(file);
    if (fault) log.fault = fault.kind;
    const common = { 'ETag': v.etag, 'X-Repo-Commit': COMMIT, 'Accept-Ranges': 'bytes', 'Content-Type': 'application/octet-stream' };
    if (fault?.kind === 'status') {
      log.status = fault.status ?? 503;
      res.writeHead(log.status, { ...(fault.retryAfter ? { 'Retry-After': fault.retryAfter } : {}), 'Content-Type': 'text/plain' });
      res.end('busy');
      return;
    }
    // Range, honoured only when If-Range (if sent) still names the current version.
    let start = 0;
    let end = v.bytes.length - 1;
    let partial = false;
    const m = /^bytes=(\d+)-(\d*)$/.exec(log.range ?? '');
    if (m && (log.ifRange === null || log.ifRange === v.etag)) {
      start = Number(m[1]);
      end = m[2] === '' ? v.bytes.length - 1 : Math.min(Number(m[2]), v.bytes.length - 1);
      if (start >= v.bytes.length || end < start) {
        log.status = 416;
        res.writeHead(416, { 'Content-Range': `bytes */${v.bytes.length}` });
        res.end();
        return;
      }
      partial = true;
    }
    const body = v.bytes.subarray(start, end + 1);
    log.status = partial ? 206 : 200;
    const range = partial ? { 'Content-Range': `bytes ${start}-${end}/${v.bytes.length}` } : {};
    if (req.method === 'HEAD') {
      res.writeHead(log.status, { ...common, ...range, 'Content-Length': String(body.length) });
      res.end();
      return;
    }
    const cut = Math.min(fault?.afterBytes ?? 0, body.length);
    if (fault?.kind === 'short' && partial) {
      // Chunked, so the body can end cleanly before what Content-Range promised.
      res.writeHead(206, { ...common, ...range });
      res.end(body.subarray(0, cut));
      return;
    }
    res.writeHead(log.status, { ...common, ...range, 'Content-Length': String(body.length) });
    if (!fault) {
      res.end(body);
      return;
    }
    res.write(body.subarray(0, cut), () => {
      if (fault.kind === 'reset' || fault.kind === 'change') {
        if (fault.kind === 'change') files.set(file, version(fault.bytes ?? v.bytes.slice().reverse()));
        res.socket?.destroy();
      } else if (fault.kind === 'short') {
        res.socket?.end(); // a clean close before Content-Length
      } else if (fault.kind === 'stall') {
        events.emit('stall', log);
        // Held: nothing more is written; the client's stall timeout (or cancel) closes it.
      }
    });
  }

  const server = createServer((req, res) => {
    for (const [k, v] of Object.entries(CORS)) res.setHeader(k, v);
    if (req.method === 'OPTIONS') {
      // A browser's preflight: answered, not logged (it carries no Authorization, and fault
      // matching and the request log are about the requests that fetch bytes).
      res.writeHead(204, {
        'Access-Control-Allow-Methods': 'GET, HEAD',
        'Access-Control-Allow-Headers': 'Authorization, Range, If-Range',
        'Access-Control-Max-Age': '600',
      }).end();
      return;
    }
    const url = new URL(req.url ?? '/', 'http://x');
    const log: LoggedRequest = {
      method: req.method ?? 'GET', path: url.pathname, file: null, range: req.headers.range ?? null, ifRange: (req.headers['if-range'] as string | undefined) ?? null,
      auth: req.headers.authorization ?? null, status: 0, at: performance.now() - t0, aborted: false,
    };
    requests.push(log);
    open++;
    res.on('close', () => {
      open--;
      if (!res.writableFinished) log.aborted = true;
      if (open === 0) events.emit('idle');
    });

    const cdn = /^\/cdn\/([0-9a-f]{64})\/(.+)$/.exec(url.pathname);
    if (cdn) {
      log.file = decodeURIComponent(cdn[2]);
      events.emit('request', log);
      if (!files.has(log.file)) {
        log.status = 404;
        res.writeHead(404).end();
        return;
      }
      serveBytes(req, res, log, log.file);
      return;
    }
    const m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    const repo = m?.[1];
    log.file = m ? decodeURIComponent(m[3]) : null;
    // Emitted once the file is known, before any answer: a listener may still add a fault for it.
    events.emit('request', log);
    if (!m || (repo !== opts.repo && repo !== opts.gatedRepo)) {
      log.status = 404;
      res.writeHead(404, { 'X-Error-Code': 'RepoNotFound' }).end('Repository not found');
      return;
    }
    if (repo === opts.gatedRepo && req.headers.authorization !== `Bearer ${opts.token}`) {
      log.status = 401;
      res.writeHead(401, { 'X-Error-Code': 'GatedRepo', 'Content-Type': 'text/plain' })
        .end(`Access to model ${repo} is restricted. You must have access to it and be authenticated to access it.`);
      return;
    }
    const file = log.file!;
    const v = files.get(file);
    if (!v) {
      log.status = 404;
      res.writeHead(404, { 'X-Error-Code': 'EntryNotFound', 'X-Repo-Commit': COMMIT }).end('Entry not found');
      return;
    }
    if (isLfs(file)) {
      log.status = 302;
      res.writeHead(302, {
        Location: `/cdn/${v.etag.slice(1, -1)}/${encodeURIComponent(file)}`,
        'X-Linked-Etag': v.etag, 'X-Linked-Size': String(v.bytes.length), 'X-Repo-Commit': COMMIT,
      }).end();
      return;
    }
    serveBytes(req, res, log, file);
  });
  // No keep-alive between tests' requests: each request is its own connection, so a reset or a
  // held connection affects exactly one request.
  server.keepAliveTimeout = 1;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  // `open` is a live getter: Object.assign would copy its value once (always 0).
  Object.defineProperty(events, 'open', { get: () => open, enumerable: true });
  return Object.assign(events as EventEmitter & { readonly open: number }, {
    url: `http://127.0.0.1:${port}`,
    requests,
    faults,
    version: (file: string) => files.get(file)!,
    reset: () => {
      load();
      faults.length = 0;
      requests.length = 0;
      events.removeAllListeners('request');
      events.removeAllListeners('stall');
    },
    idle: () => (open === 0 ? Promise.resolve() : new Promise<void>((resolve) => events.once('idle', () => resolve()))),
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  });
}
