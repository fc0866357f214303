// The model download path (remoteModel, httpSource, httpText) against real HTTP faults: a local
// Hub stand-in (src/testing/hub-server.ts) on 127.0.0.1 serves the demo model with resolve URLs, a
// redirect for the weights, Range, If-Range, ETag and a gated repository, and injects resets,
// stalls, 503 bursts, 429 with Retry-After, short bodies and a file that changes mid-download.
// Each test loads the model as the engine does (remoteModel, then openModelFolder and every tensor
// read in file order) and checks the bytes against the files on disk, that progress never went
// back, and what the server saw.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { ModelFileError } from '../errors.ts';
import { startHubServer, type HubServer } from '../testing/hub-server.ts';
import { bytesSource } from './byte-source.ts';
import { hubBaseUrl, remoteModel, type DownloadProgress, type HttpOptions, type RetryNotice } from './hub.ts';
import { openModelFolder } from './model-folder.ts';
import { SafetensorsFile } from './safetensors.ts';

const ROOT = new URL('../../public/models/demo/', import.meta.url).pathname;
const REPO = 'webtune/demo';
const GATED = 'webtune/gated';
const TOKEN = 'hf_test_token';
const disk = (f: string) => new Uint8Array(readFileSync(ROOT + f));

let hub: HubServer;
beforeAll(async () => {
  hub = await startHubServer({ root: ROOT, repo: REPO, gatedRepo: GATED, token: TOKEN });
});
afterAll(() => hub.close());
beforeEach(() => hub.reset());

/** Fast tries for tests: faults are detected in 1 s and retried after 20 ms. */
const FAST: HttpOptions = { stallTimeoutMs: 1000, retryDelayMs: 20 };

interface Loaded {
  texts: Record<string, string>;
  tensors: Map<string, Uint8Array>;
  progress: DownloadProgress[];
}

/** What the engine does with a Hub model, minus the GPU: remoteModel, then every tensor read. */
async function load(o: HttpOptions = {}, repo = REPO): Promise<Loaded> {
  const progress: DownloadProgress[] = [];
  const r = await remoteModel(hubBaseUrl(repo, 'main', hub.url), { ...FAST, ...o, onProgress: (p) => progress.push({ ...p }) });
  const folder = await openModelFolder(r.files);
  const tensors = new Map<string, Uint8Array>();
  for await (const t of folder.tensors()) tensors.set(t.name, await t.readBytes());
  return { texts: r.texts, tensors, progress };
}

/** The demo model's tensors read straight from disk. */
async function diskTensors(): Promise<Map<string, Uint8Array>> {
  const f = await SafetensorsFile.open(bytesSource('model.safetensors', disk('model.safetensors')));
  return new Map(await Promise.all(f.tensors.map(async (t) => [t.name, await f.readBytes(t.name)] as const)));
}

/** Bytes equal the files on disk (or `texts` overrides), and progress never went back. */
async function expectIntact(got: Loaded, texts: Record<string, Uint8Array> = {}): Promise<void> {
  for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json']) {
    // A boolean, not the 1 MB strings: a failure message must not print the tokenizer.
    expect(got.texts[f] === new TextDecoder().decode(texts[f] ?? disk(f)), `${f} as on disk`).toBe(true);
  }
  const want = await diskTensors();
  expect([...got.tensors.keys()].sort()).toEqual([...want.keys()].sort());
  for (const [name, bytes] of want) expect(Buffer.compare(got.tensors.get(name)!, bytes), name).toBe(0);
  const byFile = new Map<string, number>();
  for (const p of got.progress) {
    expect(p.loaded, `${p.file} progress`).toBeGreaterThanOrEqual(byFile.get(p.file) ?? 0);
    expect(p.loaded).toBeLessThanOrEqual(p.total);
    byFile.set(p.file, p.loaded);
  }
  expect(byFile.get('tokenizer.json')).toBe((texts['tokenizer.json'] ?? disk('tokenizer.json')).length);
}

/** The weights' CDN requests are the 1-byte probe, the 8-byte length, the header, then the tensors
 *  in file order: the 4th reads the 4 MB embedding. A 'request' listener that pushes a fault when
 *  it sees that request gets the fault applied to it (the server takes faults after emitting). */
const FIRST_TENSOR = 4;

const served = (file: string) => hub.requests.filter((r) => r.file === file && r.status !== 302);

describe('the Hub stand-in', () => {
  test('resolve URLs, a redirect for LFS files, Range, ETag, HEAD and 404 as the Hub answers them', async () => {
    const base = hubBaseUrl(REPO, 'main', hub.url);
    const head = await fetch(base + 'model.safetensors', { method: 'HEAD', redirect: 'manual' });
    expect(head.status).toBe(302);
    expect(head.headers.get('x-linked-size')).toBe(String(disk('model.safetensors').length));
    const h = await fetch(base + 'model.safetensors', { method: 'HEAD' });
    expect(h.headers.get('content-length')).toBe(String(disk('model.safetensors').length));
    expect(h.headers.get('etag')).toBe(hub.version('model.safetensors').etag);
    const r = await fetch(base + 'config.json', { headers: { Range: 'bytes=2-5' } });
    expect(r.status).toBe(206);
    expect(new Uint8Array(await r.arrayBuffer())).toEqual(disk('config.json').subarray(2, 6));
    const stale = await fetch(base + 'config.json', { headers: { Range: 'bytes=2-5', 'If-Range': '"other"' } });
    expect(stale.status).toBe(200);
    await stale.body?.cancel();
    expect((await fetch(base + 'missing.json')).status).toBe(404);
  });
});

describe('downloads under HTTP faults', () => {
  test('a clean load: every byte equal, weights by range reads behind a redirect', async () => {
    await expectIntact(await load());
    expect(hub.requests.some((r) => r.file === 'model.safetensors' && r.status === 302)).toBe(true);
    expect(served('model.safetensors').every((r) => r.status === 206)).toBe(true);
  });

  test('a connection reset mid-body is resumed from the last byte with Range and If-Range', async () => {
    hub.faults.push({ file: 'tokenizer.json', kind: 'reset', afterBytes: 300_000 });
    const got = await load();
    await expectIntact(got);
    const tok = served('tokenizer.json');
    expect(tok[0].fault).toBe('reset');
    expect(tok[1]).toMatchObject({ range: 'bytes=300000-', ifRange: hub.version('tokenizer.json').etag, status: 206 });
  });

  test('a reset in the middle of a tensor read resumes that read', async () => {
    let n = 0;
    hub.on('request', function arm(r) {
      if (r.path.startsWith('/cdn/') && ++n === FIRST_TENSOR) {
        hub.faults.push({ file: 'model.safetensors', kind: 'reset', afterBytes: 100_000 });
        hub.off('request', arm);
      }
    });
    const got = await load();
    await expectIntact(got);
    const w = served('model.safetensors');
    const cut = w.findIndex((r) => r.fault === 'reset');
    expect(cut).toBeGreaterThan(0);
    const [a] = /^bytes=(\d+)-/.exec(w[cut].range!)!.slice(1).map(Number);
    expect(w[cut + 1].range).toMatch(new RegExp(`^bytes=${a + 100_000}-`));
    expect(w[cut + 1].ifRange).toBe(hub.version('model.safetensors').etag);
  });

  test('a stall is detected within the stall timeout and resumed with a Range request', async () => {
    hub.faults.push({ file: 'tokenizer.json', kind: 'stall', afterBytes: 200_000 });
    let stalledAt = 0;
    hub.once('stall', (r) => (stalledAt = r.at));
    const retries: RetryNotice[] = [];
    const got = await load({ stallTimeoutMs: 1000, onRetry: (r) => retries.push(r) });
    await expectIntact(got);
    // The page is told, so it can say "stalled, retrying…".
    expect(retries).toEqual([{ file: 'tokenizer.json', reason: 'stalled: no data for 1000 ms', stalled: true, attempt: 1 }]);
    const tok = served('tokenizer.json');
    expect(tok[0]).toMatchObject({ fault: 'stall', aborted: true });
    expect(tok[1]).toMatchObject({ range: 'bytes=200000-', status: 206 });
    // The client gave up on the silent connection after about the stall timeout, not later.
    const gaveUp = tok[1].at - stalledAt;
    expect(gaveUp).toBeGreaterThanOrEqual(900);
    expect(gaveUp).toBeLessThan(5000);
  });

  test('a 503 burst and a 429 with Retry-After are retried, waiting as long as the server asks', async () => {
    hub.faults.push({ file: 'config.json', kind: 'status', status: 503, times: 3 }, { file: 'tokenizer_config.json', kind: 'status', status: 429, retryAfter: '1' });
    const retries: RetryNotice[] = [];
    await expectIntact(await load({ onRetry: (r) => retries.push(r) }));
    expect(served('config.json').map((r) => r.status)).toEqual([503, 503, 503, 200]);
    expect(retries.map((r) => [r.file, r.reason, r.stalled, r.attempt])).toEqual([
      ['config.json', 'HTTP 503', false, 1], ['config.json', 'HTTP 503', false, 2], ['config.json', 'HTTP 503', false, 3], ['tokenizer_config.json', 'HTTP 429', false, 1],
    ]);
    const tc = served('tokenizer_config.json');
    expect(tc.map((r) => r.status)).toEqual([429, 200]);
    expect(tc[1].at - tc[0].at).toBeGreaterThanOrEqual(1000);
  });

  test('a server asking to wait longer than the limit is a typed error, not a long silence', async () => {
    hub.faults.push({ file: 'config.json', kind: 'status', status: 429, retryAfter: '3600' });
    const e = await load().then(() => 'loaded', (x: unknown) => x);
    expect(e).toBeInstanceOf(ModelFileError);
    expect((e as ModelFileError).message).toMatch(/asked to wait 3600 s/);
  });

  test('short bodies (a 206 that ends early, a 200 closed before its Content-Length) are completed', async () => {
    hub.faults.push({ file: 'tokenizer.json', kind: 'short', afterBytes: 500_000 });
    let n = 0;
    hub.on('request', function arm(r) {
      if (r.path.startsWith('/cdn/') && ++n === FIRST_TENSOR) {
        hub.faults.push({ file: 'model.safetensors', kind: 'short', afterBytes: 50_000 });
        hub.off('request', arm);
      }
    });
    await expectIntact(await load());
    expect(served('tokenizer.json')[1]).toMatchObject({ range: 'bytes=500000-', status: 206 });
    const w = served('model.safetensors');
    const cut = w.findIndex((r) => r.fault === 'short');
    expect(w[cut + 1].range).toMatch(/^bytes=\d+-\d+$/);
  });

  test('a file whose ETag changes mid-download restarts on the new version; progress does not go back', async () => {
    const v2 = new TextEncoder().encode(new TextDecoder().decode(disk('tokenizer.json')) + '\n');
    hub.faults.push({ file: 'tokenizer.json', kind: 'change', afterBytes: 400_000, bytes: v2 });
    const got = await load();
    await expectIntact(got, { 'tokenizer.json': v2 });
    const tok = served('tokenizer.json');
    // The resume asked for the old version (If-Range) and got the new one whole.
    expect(tok[1]).toMatchObject({ range: 'bytes=400000-', status: 200 });
    expect(tok[1].ifRange).not.toBe(hub.version('tokenizer.json').etag);
    const p = got.progress.filter((x) => x.file === 'tokenizer.json').map((x) => x.loaded);
    expect(p.at(-1)).toBe(v2.length);
  });

  test('weights that change between range reads are refused, never mixed', async () => {
    let n = 0;
    hub.on('request', function arm(r) {
      if (r.path.startsWith('/cdn/') && ++n === FIRST_TENSOR) {
        hub.faults.push({ file: 'model.safetensors', kind: 'change', afterBytes: 10, bytes: disk('model.safetensors').reverse() });
        hub.off('request', arm);
      }
    });
    const e = await load().then(() => 'loaded', (x: unknown) => x);
    expect(e).toBeInstanceOf(ModelFileError);
    expect((e as ModelFileError).details).toMatchObject({ file: 'model.safetensors', reason: 'changed' });
  });

  test('a gated repository without a token is a typed 401 error that asks for one; with it, it loads', async () => {
    const e = await load({}, GATED).then(() => 'loaded', (x: unknown) => x);
    expect(e).toBeInstanceOf(ModelFileError);
    expect((e as ModelFileError).details).toMatchObject({ status: 401, reason: 'unauthorized', file: 'config.json' });
    expect((e as ModelFileError).hint).toMatch(/access token/);
    await expectIntact(await load({ headers: { Authorization: `Bearer ${TOKEN}` } }, GATED));
    expect(hub.requests.filter((r) => r.path.startsWith(`/${GATED}/`)).every((r) => r.auth === `Bearer ${TOKEN}` || r.status === 401)).toBe(true);
  });
});

describe('cancel', () => {
  test('cancel during a held download aborts it and sends nothing more', async () => {
    hub.faults.push({ file: 'tokenizer.json', kind: 'stall', afterBytes: 1000 });
    const ctrl = new AbortController();
    hub.once('stall', () => ctrl.abort());
    const e = await load({ signal: ctrl.signal, stallTimeoutMs: 60_000 }).then(() => 'loaded', (x: unknown) => x);
    expect(e).toBeInstanceOf(ModelFileError);
    expect((e as ModelFileError).details.reason).toBe('cancelled');
    await hub.idle();
    const seen = hub.requests.length;
    expect(hub.requests.at(-1)).toMatchObject({ file: 'tokenizer.json', fault: 'stall', aborted: true });
    // Nothing of the cancelled load is left running: while a later load (of a repository that does
    // not exist) talks to the server, the server sees that load's requests and no other.
    await load({ retryDelayMs: 1 }, 'webtune/none').catch(() => {});
    expect(hub.requests.slice(seen).every((r) => r.path.startsWith('/webtune/none/'))).toBe(true);
  });

  test('cancel during a Retry-After wait returns at once and sends nothing more', async () => {
    hub.faults.push({ file: 'config.json', kind: 'status', status: 503, retryAfter: '30' });
    const ctrl = new AbortController();
    hub.on('request', function first(r) {
      if (r.file === 'config.json') {
        hub.off('request', first);
        // Abort once the 503 has been sent: the client is then waiting out the 30 s.
        setImmediate(() => ctrl.abort());
      }
    });
    const t0 = performance.now();
    const e = await load({ signal: ctrl.signal }).then(() => 'loaded', (x: unknown) => x);
    expect(performance.now() - t0).toBeLessThan(10_000);
    expect((e as ModelFileError).details.reason).toBe('cancelled');
    await hub.idle();
    expect(hub.requests.map((r) => r.status)).toEqual([503]);
  });
});
