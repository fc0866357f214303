// Hub URLs and the HTTP Range ByteSource against a fake fetch.
import { describe, expect, test } from 'vitest';
import { checkRepoId, hubBaseUrl, hubFileUrl, httpSource, remoteModel, totalFromContentRange } from './hub.ts';
import { ModelFileError } from '../errors.ts';
import { SafetensorsFile, writeSafetensors } from './safetensors.ts';
import { openModelFolder } from './model-folder.ts';

interface Call { url: string; range: string | null; auth: string | null }

/** A static server over `files`; `ranges` false makes it ignore Range like some CDNs do. */
function server(files: Record<string, Uint8Array | string>, opts: { ranges?: boolean; status?: (url: string, n: number) => number | null } = {}) {
  const calls: Call[] = [];
  const fetch = async (url: string, init?: RequestInit): Promise<Response> => {
    const h = new Headers(init?.headers);
    calls.push({ url, range: h.get('range'), auth: h.get('authorization') });
    const forced = opts.status?.(url, calls.length);
    if (forced) return new Response('x', { status: forced });
    const name = url.slice(url.lastIndexOf('/') + 1);
    const f = files[name];
    if (f === undefined) return new Response('not found', { status: 404 });
    const bytes = typeof f === 'string' ? new TextEncoder().encode(f) : f;
    const m = /bytes=(\d+)-(\d+)/.exec(h.get('range') ?? '');
    if (!m || opts.ranges === false) return new Response(bytes as Uint8Array<ArrayBuffer>, { status: 200, headers: { 'content-length': String(bytes.length) } });
    const a = Number(m[1]), b = Math.min(Number(m[2]), bytes.length - 1);
    return new Response(bytes.slice(a, b + 1), { status: 206, headers: { 'content-range': `bytes ${a}-${b}/${bytes.length}` } });
  };
  return { calls, fetch };
}

const file = Uint8Array.from({ length: 1000 }, (_, i) => i % 251);

describe('hub URLs', () => {
  test('resolve URLs, with revisions encoded as one segment', () => {
    expect(hubFileUrl('HuggingFaceTB/SmolLM2-135M', undefined, 'config.json')).toBe('https://huggingface.co/HuggingFaceTB/SmolLM2-135M/resolve/main/config.json');
    expect(hubBaseUrl('org/m', 'refs/pr/1')).toBe('https://huggingface.co/org/m/resolve/refs%2Fpr%2F1/');
    expect(hubFileUrl(' gpt2 ', 'abc123', 'onnx/model a.json')).toBe('https://huggingface.co/gpt2/resolve/abc123/onnx/model%20a.json');
  });

  test('ids that are not owner/name are refused before any request', () => {
    for (const bad of ['', '../etc', 'a/b/c', 'https://evil.com/x', 'org/..', 'a b/c']) {
      expect(() => checkRepoId(bad), bad).toThrow(ModelFileError);
    }
  });

  test('Content-Range totals', () => {
    expect(totalFromContentRange('bytes 0-0/12345')).toBe(12345);
    expect(totalFromContentRange('bytes */77')).toBe(77);
    expect(totalFromContentRange(null)).toBeNull();
    expect(totalFromContentRange('bytes 0-0/*')).toBeNull();
  });
});

describe('httpSource', () => {
  test('reads exactly the requested ranges, one request each, with the token and byte progress', async () => {
    const s = server({ 'w.safetensors': file });
    const progress: number[] = [];
    const src = (await httpSource('https://huggingface.co/o/m/resolve/main/w.safetensors', 'w.safetensors',
      { fetch: s.fetch, headers: { Authorization: 'Bearer hf_x' }, onProgress: (p) => progress.push(p.loaded) }))!;
    expect(src.size).toBe(1000);
    expect(await src.read(10, 5)).toEqual(file.slice(10, 15));
    expect(await src.read(995, 5)).toEqual(file.slice(995));
    expect(s.calls.map((c) => c.range)).toEqual(['bytes=0-0', 'bytes=10-14', 'bytes=995-999']);
    expect(s.calls.every((c) => c.auth === 'Bearer hf_x')).toBe(true);
    expect(progress.at(-1)).toBe(10);
    await expect(src.read(998, 5)).rejects.toThrow(/cannot read 5 bytes at offset 998/);
  });

  test('a server that ignores Range still works: the body is read once and kept', async () => {
    const s = server({ 'w.bin': file }, { ranges: false });
    const src = (await httpSource('http://x/w.bin', 'w.bin', { fetch: s.fetch }))!;
    expect(await src.read(100, 3)).toEqual(file.slice(100, 103));
    expect(await src.read(0, 2)).toEqual(file.slice(0, 2));
    expect(s.calls).toHaveLength(1);
  });

  test('401 names the token; 404 is null when optional and an error otherwise', async () => {
    const s = server({}, { status: (u) => (u.includes('gated') ? 401 : null) });
    const err = await httpSource('http://x/gated/model.safetensors', 'model.safetensors', { fetch: s.fetch }).catch((e) => e);
    expect(err).toBeInstanceOf(ModelFileError);
    expect(err.hint).toMatch(/access token/);
    expect(err.details).toMatchObject({ status: 401, file: 'model.safetensors' });
    expect(await httpSource('http://x/none.safetensors', 'none.safetensors', { fetch: s.fetch }, true)).toBeNull();
    await expect(httpSource('http://x/none.safetensors', 'none.safetensors', { fetch: s.fetch })).rejects.toThrow(/not found \(HTTP 404\)/);
  });

  test('transient failures are retried; a dead network becomes a typed error', async () => {
    const s = server({ 'w': file }, { status: (_u, n) => (n === 1 ? 503 : null) });
    const src = (await httpSource('http://x/w', 'w', { fetch: s.fetch }))!;
    expect(src.size).toBe(1000);
    const dead = async () => {
      throw new TypeError('Failed to fetch');
    };
    const err = await httpSource('http://x/w', 'w', { fetch: dead, retries: 1 }).catch((e) => e);
    expect(err).toBeInstanceOf(ModelFileError);
    expect(err.details.reason).toBe('network');
  });
});

describe('remoteModel', () => {
  const st = writeSafetensors({ 'model.norm.weight': { dtype: 'F32', shape: [4], data: new Float32Array([1, 2, 3, 4]) } });
  const small = { 'config.json': '{"a":1}', 'tokenizer.json': '{"model":{}}', 'tokenizer_config.json': '{}' };

  test('a single model.safetensors is streamed by range reads; the tensor data is fetched alone', async () => {
    const s = server({ ...small, 'model.safetensors': st });
    const r = await remoteModel('https://huggingface.co/o/m/resolve/main/', { fetch: s.fetch });
    expect(Object.keys(r.texts).sort()).toEqual(['config.json', 'tokenizer.json', 'tokenizer_config.json']);
    const f = await SafetensorsFile.open(r.files['model.safetensors']);
    expect(Array.from(await f.readFloat32('model.norm.weight'))).toEqual([1, 2, 3, 4]);
    const ranges = s.calls.filter((c) => c.url.endsWith('model.safetensors')).map((c) => c.range);
    expect(ranges).toHaveLength(4); // probe, length, header, the one tensor
    expect(ranges.at(-1)).toMatch(/^bytes=\d+-\d+$/);
  });

  test('a sharded model is found through its index', async () => {
    const index = JSON.stringify({ weight_map: { 'model.norm.weight': 'model-00001-of-00001.safetensors' } });
    const s = server({ ...small, 'model.safetensors.index.json': index, 'model-00001-of-00001.safetensors': st });
    const r = await remoteModel('http://x/', { fetch: s.fetch });
    const folder = await openModelFolder(r.files);
    expect(folder.shards).toEqual(['model-00001-of-00001.safetensors']);
  });

  test('a repository with only pickle weights is refused with the reason', async () => {
    const s = server({ ...small, 'pytorch_model.bin': file });
    await expect(remoteModel('http://x/', { fetch: s.fetch })).rejects.toThrow(/pickle/);
  });
});
