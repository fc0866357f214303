// `webtune push --adapter DIR --repo owner/name`: uploads a PEFT adapter to the Hugging Face Hub with
// a model card (src/export/model-card.ts) and its run record, optionally with a merged model folder,
// through @huggingface/hub (createRepo, then uploadFiles). Everything goes in one commit, so a failed
// upload leaves the repository as it was. The token comes from --token or HF_TOKEN.
import { parseArgs } from 'node:util';
import { openAsBlob } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createRepo, uploadFiles, HubApiError } from '@huggingface/hub';
import { AdapterFileError, HubUploadError, UsageError, WebtuneError } from '../errors.ts';
import { readJsonSource } from '../io/byte-source.ts';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, parseAdapterConfig } from '../io/peft.ts';
import { SafetensorsFile } from '../io/safetensors.ts';
import { RUN_RECORD_FILE, parseRunRecord, type RunRecord } from '../export/run-record.ts';
import { LOSS_CURVE_FILE, lossCurveSvg, modelCard } from '../export/model-card.ts';
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
  if (!/^[\w.-]+\/[\w.-]+$/.test(repo)) throw new UsageError(`--repo must be owner/name, got "${repo}".`, USAGE, { field: 'repo' });
  const token = (v.token as string | undefined) ?? process.env.HF_TOKEN;
  if (!token) throw new UsageError('No Hugging Face token: pass --token or set HF_TOKEN.', 'Create a token with write access at https://huggingface.co/settings/tokens.', { field: 'token' });
  const hubUrl = (v['hub-url'] as string | undefined) ?? 'https://huggingface.co';

  // Read and check everything before any request: a bad adapter never creates a repository.
  const dir = resolve(v.adapter);
  const adapterError = (m: string, h: string, d: Record<string, unknown>) => new AdapterFileError(m, h, d);
  const config = parseAdapterConfig(await readJsonSource(await fileSource(join(dir, ADAPTER_CONFIG_FILE)), adapterError), join(dir, ADAPTER_CONFIG_FILE));
  await SafetensorsFile.open(await fileSource(join(dir, ADAPTER_WEIGHTS_FILE))).catch((e: unknown) => {
    throw e instanceof WebtuneError ? new AdapterFileError(e.message, e.hint, e.details) : e;
  });
  let record: RunRecord | null = null;
  const recordFile = join(dir, RUN_RECORD_FILE);
  const hasRecord = await fileSource(recordFile).then(() => true, () => false);
  if (hasRecord) record = parseRunRecord(await readJsonSource(await fileSource(recordFile), adapterError), recordFile);

  const files: { path: string; content: Blob }[] = [];
  for (const name of [ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, ...(record ? [RUN_RECORD_FILE] : [])]) files.push({ path: name, content: await openAsBlob(join(dir, name)) });
  if (typeof v.merged === 'string') {
    const m = resolve(v.merged);
    for (const e of await readdir(m, { withFileTypes: true })) if (e.isFile()) files.push({ path: `merged/${e.name}`, content: await openAsBlob(join(m, e.name)) });
  }
  files.push({ path: 'README.md', content: new Blob([modelCard({ repo, config, record, merged: typeof v.merged === 'string' })]) });
  if (record?.history.length) files.push({ path: LOSS_CURVE_FILE, content: new Blob([lossCurveSvg(record.history)]) });

  try {
    try {
      await createRepo({ repo, accessToken: token, hubUrl, private: Boolean(v.private) });
    } catch (e) {
      // An existing repository is fine (huggingface_hub's create_repo(exist_ok=True)).
      if (!(e instanceof HubApiError && e.statusCode === 409)) throw e;
    }
    const out = await uploadFiles({ repo, accessToken: token, hubUrl, files, commitTitle: 'Upload LoRA adapter trained with webtune', useXet: false });
    process.stderr.write(`Uploaded ${files.length} files to ${hubUrl}/${repo}${out?.commit.oid ? ` (commit ${out.commit.oid})` : ''}.\n`);
    return 0;
  } catch (e) {
    if (e instanceof WebtuneError) throw e;
    const status = e instanceof HubApiError ? e.statusCode : undefined;
    throw new HubUploadError(
      `Upload to ${hubUrl}/${repo} failed${status ? ` (HTTP ${status})` : ''}: ${(e as Error).message}`,
      status === 401 || status === 403 ? 'Check that the token has write access to this repository or organization.' : 'Nothing was committed; check the network and try again.',
      { repo, status },
    );
  }
}
