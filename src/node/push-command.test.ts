// `webtune push` against a local HTTP server on 127.0.0.1 that answers the routes @huggingface/hub
// calls (repo creation, preupload, LFS batch + upload, commit), as the real Hub cannot be reached
// from tests: the files that land in the repository, the model card's metadata, and failures that
// commit nothing.
import { afterAll, beforeAll, beforeEach, describe, expect, test, vi } from 'vitest';
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { main } from './cli.ts';
import { adapterTensorSpecs, encodeAdapter, loraConfig } from '../io/peft.ts';
import { parseModelConfig } from '../model/config.ts';
import { DEFAULT_LORA } from '../model/lora.ts';
import { DEFAULT_TRAIN } from '../train/config.ts';
import { buildRunRecord, runRecordJson, RUN_RECORD_FILE } from '../export/run-record.ts';
import { pushAdapter } from '../export/hub-upload.ts';
import { HubUploadError } from '../errors.ts';

const fixtures = fileURLToPath(new URL('../../fixtures/models/', import.meta.url));

/** A fake Hub: repositories as path -> bytes, and every request seen. */
class FakeHub {
  repos = new Map<string, Map<string, Uint8Array>>();
  lfs = new Map<string, Uint8Array>();
  requests: { method: string; url: string; auth: string | undefined }[] = [];
  failCommit = false;
  server!: Server;
  url = '';

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      void this.handle(req).then(([status, body]) => {
        res.writeHead(status, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify(body));
      });
    });
    await new Promise<void>((ok) => this.server.listen(0, '127.0.0.1', ok));
    const addr = this.server.address();
    this.url = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  }

  private async handle(req: IncomingMessage): Promise<[number, unknown]> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    const url = req.url ?? '';
    this.requests.push({ method: req.method ?? '', url, auth: req.headers.authorization });
    let m: RegExpExecArray | null;
    if (req.method === 'POST' && url === '/api/repos/create') {
      const j = JSON.parse(body.toString());
      const repo = `${j.organization}/${j.name}`;
      if (j.type !== 'model') return [400, { error: 'type' }];
      if (this.repos.has(repo)) return [409, { error: 'You already created this model repo' }];
      this.repos.set(repo, new Map());
      return [200, { url: `${this.url}/${repo}`, id: repo }];
    }
    if (req.method === 'POST' && (m = /^\/api\/models\/([^/]+\/[^/]+)\/preupload\/main$/.exec(url))) {
      const j = JSON.parse(body.toString());
      return [200, { files: j.files.map((f: { path: string }) => ({ path: f.path, uploadMode: f.path.endsWith('.safetensors') ? 'lfs' : 'regular' })) }];
    }
    if (req.method === 'POST' && (m = /^\/([^/]+\/[^/]+)\.git\/info\/lfs\/objects\/batch$/.exec(url))) {
      const j = JSON.parse(body.toString());
      return [200, { transfer: 'basic', objects: j.objects.map((o: { oid: string; size: number }) => ({ ...o, actions: { upload: { href: `${this.url}/lfs-upload/${o.oid}` } } })) }];
    }
    if (req.method === 'PUT' && (m = /^\/lfs-upload\/([0-9a-f]{64})$/.exec(url))) {
      if (createHash('sha256').update(body).digest('hex') !== m[1]) return [400, { error: 'sha256 mismatch' }];
      this.lfs.set(m[1], new Uint8Array(body));
      return [200, {}];
    }
    if (req.method === 'POST' && (m = /^\/api\/models\/([^/]+\/[^/]+)\/commit\/main$/.exec(url))) {
      if (this.failCommit) return [500, { error: 'Internal Error' }];
      const repo = this.repos.get(m[1]);
      if (!repo) return [404, { error: 'Repository not found' }];
      const staged = new Map<string, Uint8Array>();
      for (const line of body.toString().split('\n')) {
        const { key, value } = JSON.parse(line);
        if (key === 'file') staged.set(value.path, new Uint8Array(Buffer.from(value.content, value.encoding === 'base64' ? 'base64' : 'utf8')));
        else if (key === 'lfsFile') {
          const blob = this.lfs.get(value.oid);
          if (!blob) return [400, { error: `LFS object ${value.oid} was not uploaded` }];
          staged.set(value.path, blob);
        }
      }
      for (const [p, b] of staged) repo.set(p, b);
      return [200, { commitOid: 'c0ffee', commitUrl: `${this.url}/${m[1]}/commit/c0ffee` }];
    }
    return [404, { error: `no route ${req.method} ${url}` }];
  }
}

let tmp: string, adapter: string;
const hub = new FakeHub();

async function run(args: string[]): Promise<{ code: number; err: string }> {
  let err = '';
  const spy = vi.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => ((err += String(s)), true));
  try {
    return { code: await main(args), err };
  } finally {
    spy.mockRestore();
  }
}

beforeAll(async () => {
  await hub.start();
  tmp = await mkdtemp(join(tmpdir(), 'webtune-push-'));
  adapter = join(tmp, 'adapter');
  await mkdir(adapter);
  const cfg = parseModelConfig(JSON.parse(await readFile(join(fixtures, 'tiny-llama', 'config.json'), 'utf8')));
  const lora = loraConfig({ loraDropout: 0, targetModules: ['q_proj', 'v_proj'], r: 4, loraAlpha: 16, baseModelNameOrPath: 'tiny-llama' });
  const weights = new Map(adapterTensorSpecs(cfg, lora).map((s) => [s.key, new Float32Array(s.shape[0] * s.shape[1]).fill(0.5)]));
  for (const [n, b] of Object.entries(encodeAdapter(cfg, lora, weights))) await writeFile(join(adapter, n), b);
  const record = buildRunRecord({
    base: { id: 'HuggingFaceTB/SmolLM2-135M', revision: null, folder: '/models/smol', architecture: 'llama', dtype: 'bfloat16', quant: 'nf4', doubleQuant: false },
    dataset: { file: 'cups.jsonl', bytes: 1234, sha256: 'ab'.repeat(32), format: 'jsonl', shape: 'seed', template: 'seed', columns: {}, rowsRead: 40, skippedRows: 1, trainExamples: 36, validationExamples: 3 },
    lora: { ...DEFAULT_LORA, rank: 4, alpha: 16 }, train: { ...DEFAULT_TRAIN, maxSteps: 3 }, seqLen: 256, completionOnlyLoss: true, assistantOnlyLoss: true,
    valSplit: 3, checkpointing: false, options: {}, totalSteps: 3,
    history: [{ step: 1, epoch: 0, loss: 2.5, lr: 2e-4, grad_norm: 1, tokens: 10 }, { step: 2, epoch: 0, loss: 2.25, lr: 1e-4, grad_norm: 1, tokens: 10 },
      { step: 3, epoch: 0, loss: 2.0, lr: 0, grad_norm: 1, tokens: 10, val_loss: 2.125 }],
  });
  await writeFile(join(adapter, RUN_RECORD_FILE), runRecordJson(record));
});
afterAll(async () => {
  await new Promise((ok) => hub.server.close(ok));
  await rm(tmp, { recursive: true, force: true });
});
beforeEach(() => {
  hub.requests = [];
  hub.failCommit = false;
});

describe('webtune push', () => {
  test('creates the repo and commits the adapter, run record, model card and loss curve', async () => {
    const r = await run(['push', '--adapter', adapter, '--repo', 'me/cups-lora', '--token', 'hf_test', '--hub-url', hub.url]);
    expect(r.code, r.err).toBe(0);
    const repo = hub.repos.get('me/cups-lora')!;
    expect([...repo.keys()].sort()).toEqual(['README.md', 'adapter_config.json', 'adapter_model.safetensors', 'loss.svg', 'webtune-run.json']);
    for (const f of ['adapter_config.json', 'adapter_model.safetensors', 'webtune-run.json']) {
      expect(Buffer.from(repo.get(f)!).equals(await readFile(join(adapter, f))), f).toBe(true);
    }
    expect(hub.requests.some((q) => q.url.endsWith('.git/info/lfs/objects/batch'))).toBe(true); // the weights went through LFS
    expect(hub.requests.every((q) => q.url.startsWith('/lfs-upload/') || q.auth === 'Bearer hf_test')).toBe(true);
    const card = Buffer.from(repo.get('README.md')!).toString();
    const front = card.split('---\n')[1];
    expect(front).toBe('base_model: HuggingFaceTB/SmolLM2-135M\nlibrary_name: peft\npipeline_tag: text-generation\ntags:\n- base_model:adapter:HuggingFaceTB/SmolLM2-135M\n- lora\n- sft\n- qlora\n- webtune\n');
    for (const s of ['cups.jsonl (1234 bytes)', 'ab'.repeat(32), '40 read, 1 skipped, 36 training, 3 validation', 'r 4, alpha 16, dropout 0.05',
      'q_proj, v_proj', '| 3 | 2.0000 | 2.1250 |', 'Final training loss 2, validation loss 2.125 after 3 steps', '![training loss](loss.svg)',
      'AutoPeftModelForCausalLM.from_pretrained("me/cups-lora")']) expect(card).toContain(s);
    expect(Buffer.from(repo.get('loss.svg')!).toString()).toMatch(/^<svg [^>]*>.*<polyline points="[\d., ]+"/);

    // Again into the now existing repository (409 from create), with a merged folder under merged/.
    const merged = join(tmp, 'merged');
    await mkdir(merged);
    await writeFile(join(merged, 'config.json'), '{}');
    const again = await run(['push', '--adapter', adapter, '--repo', 'me/cups-lora', '--token', 'hf_test', '--hub-url', hub.url, '--merged', merged]);
    expect(again.code, again.err).toBe(0);
    expect(repo.has('merged/config.json')).toBe(true);
    expect(Buffer.from(repo.get('README.md')!).toString()).toContain('`merged/`');
  });

  test('a failed commit is reported and leaves the repository as it was', async () => {
    const before = new Map(hub.repos.get('me/cups-lora') ?? []);
    hub.failCommit = true;
    const r = await run(['push', '--adapter', adapter, '--repo', 'me/cups-lora', '--token', 'hf_test', '--hub-url', hub.url]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/Upload to .*me\/cups-lora failed \(HTTP 500\)/);
    expect(r.err).toMatch(/Nothing was committed/);
    expect(hub.repos.get('me/cups-lora')).toEqual(before);
  });

  test('no token, a bad repo name or a damaged adapter are refused before any request', async () => {
    const saved = process.env.HF_TOKEN;
    delete process.env.HF_TOKEN;
    try {
      const r = await run(['push', '--adapter', adapter, '--repo', 'me/x', '--hub-url', hub.url]);
      expect(r.code).toBe(2);
      expect(r.err).toContain('HF_TOKEN');
    } finally {
      if (saved !== undefined) process.env.HF_TOKEN = saved;
    }
    expect((await run(['push', '--adapter', adapter, '--repo', 'no-owner', '--token', 't', '--hub-url', hub.url])).err).toContain('owner/name');
    const broken = join(tmp, 'broken');
    await mkdir(broken);
    await writeFile(join(broken, 'adapter_config.json'), await readFile(join(adapter, 'adapter_config.json')));
    await writeFile(join(broken, 'adapter_model.safetensors'), (await readFile(join(adapter, 'adapter_model.safetensors'))).subarray(0, 100));
    const b = await run(['push', '--adapter', broken, '--repo', 'me/broken', '--token', 't', '--hub-url', hub.url]);
    expect(b.code).toBe(2);
    expect(b.err).toContain('adapter_model.safetensors');
    expect(hub.requests).toEqual([]);
    expect(hub.repos.has('me/broken')).toBe(false);
  });

  test('the site path: in-memory files from the adapter library, the same commit; a refused token commits nothing', async () => {
    const files: Record<string, Uint8Array> = {};
    for (const f of ['adapter_config.json', 'adapter_model.safetensors', 'webtune-run.json']) files[f] = new Uint8Array(await readFile(join(adapter, f)));
    const out = await pushAdapter({ repo: 'me/site-lora', token: 'hf_site', hubUrl: hub.url, adapter: files });
    expect(out).toMatchObject({ url: `${hub.url}/me/site-lora`, commit: 'c0ffee' });
    const repo = hub.repos.get('me/site-lora')!;
    expect([...repo.keys()].sort()).toEqual(['README.md', 'adapter_config.json', 'adapter_model.safetensors', 'loss.svg', 'webtune-run.json']);
    for (const [f, b] of Object.entries(files)) expect(Buffer.from(repo.get(f)!).equals(Buffer.from(b)), f).toBe(true);
    expect(hub.requests.every((q) => q.url.startsWith('/lfs-upload/') || q.auth === 'Bearer hf_site')).toBe(true);
    hub.failCommit = true;
    const err = await pushAdapter({ repo: 'me/site-lora', token: 'hf_site', hubUrl: hub.url, adapter: files }).catch((e) => e);
    expect(err).toBeInstanceOf(HubUploadError);
    expect(err.details).toMatchObject({ repo: 'me/site-lora', status: 500 });
  });
});
