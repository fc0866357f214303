// `webtune push --adapter DIR --repo owner/name`: uploads a PEFT adapter to the Hugging Face Hub with
// a model card (src/export/model-card.ts) and its run record, optionally with a merged model folder,
// through src/export/hub-upload.ts, which the site uses too. Everything goes in one commit, so a
// failed upload leaves the repository as it was. The token comes from --token or HF_TOKEN.
import { parseArgs } from 'node:util';
import { openAsBlob } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { AdapterFileError, UsageError, WebtuneError } from '../errors.ts';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE } from '../io/peft.ts';
import { SafetensorsFile } from '../io/safetensors.ts';
import { RUN_RECORD_FILE } from '../export/run-record.ts';
import { checkRepoId, pushAdapter, type HubFile } from '../export/hub-upload.ts';
import { fileSource } from './fs-source.ts';

const USAGE = `usage: webtune push --adapter DIR --repo owner/name [--token TOKEN] [--private] [--merged DIR]
  [--hub-url https://huggingface.co]
  Uploads the adapter, its run record, a model card (README.md) and the loss curve in one commit.
  The token comes from --token or the HF_TOKEN environment variable.`;

export async function pushCommand(argv: string[]): Promise<number> {
  let v: Record<string, string | boolean | undefined>;
  try {
    v = parseArgs({
      args: argv, strict: true, allowPositionals: false,
      options: {
        adapter: { type: 'string' }, repo: { type: 'string' }, token: { type: 'string' }, private: { type: 'boolean' },
        merged: { type: 'string' }, 'hub-url': { type: 'string' }, help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (e) {
    throw new UsageError((e as Error).message.split('\n')[0], USAGE);
  }
  if (v.help) {
    console.log(USAGE);
    return 0;
  }
  if (typeof v.adapter !== 'string' || typeof v.repo !== 'string') throw new UsageError('--adapter and --repo are required.', USAGE, { field: v.adapter ? 'repo' : 'adapter' });
  const repo = v.repo;
  checkRepoId(repo);
  const token = (v.token as string | undefined) ?? process.env.HF_TOKEN;
  if (!token) throw new UsageError('No Hugging Face token: pass --token or set HF_TOKEN.', 'Create a token with write access at https://huggingface.co/settings/tokens.', { field: 'token' });

  // Read and check everything before any request: a bad adapter never creates a repository.
  const dir = resolve(v.adapter);
  await SafetensorsFile.open(await fileSource(join(dir, ADAPTER_WEIGHTS_FILE))).catch((e: unknown) => {
    throw e instanceof WebtuneError ? new AdapterFileError(e.message, e.hint, e.details) : e;
  });
  const adapter: Record<string, Blob> = {};
  for (const name of [ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, RUN_RECORD_FILE]) {
    const path = join(dir, name);
    if (name === RUN_RECORD_FILE && !(await fileSource(path).then(() => true, () => false))) continue;
    adapter[name] = await openAsBlob(path).catch(() => {
      throw new AdapterFileError(`${path} is missing.`, 'Point --adapter at a folder with adapter_config.json and adapter_model.safetensors.', { file: path });
    });
  }
  const merged: HubFile[] = [];
  if (typeof v.merged === 'string') {
    const m = resolve(v.merged);
    for (const e of await readdir(m, { withFileTypes: true })) if (e.isFile()) merged.push({ path: e.name, content: await openAsBlob(join(m, e.name)) });
  }
  const out = await pushAdapter({ repo, token, hubUrl: v['hub-url'] as string | undefined, private: Boolean(v.private), adapter, merged });
  process.stderr.write(`Uploaded ${out.files.length} files to ${out.url}${out.commit ? ` (commit ${out.commit})` : ''}.\n`);
  return 0;
}
