// Uploading an adapter to the Hugging Face Hub, for `webtune push` and the site alike: the PEFT
// files, the run record, a model card (model-card.ts) and the loss curve, in one commit through
// @huggingface/hub (createRepo, then uploadFiles), so a failed upload leaves the repository as it
// was. Host-neutral: the caller reads the files (from a folder, or the site's adapter library) and
// holds the token; nothing here stores it.
import { createRepo, uploadFiles, HubApiError } from '@huggingface/hub';
import { AdapterFileError, HubUploadError, UsageError, WebtuneError } from '../errors.ts';
import { parseJsonBytes } from '../io/byte-source.ts';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, parseAdapterConfig } from '../io/peft.ts';
import { RUN_RECORD_FILE, parseRunRecord, type RunRecord } from './run-record.ts';
import { LOSS_CURVE_FILE, lossCurveSvg, modelCard } from './model-card.ts';

export const DEFAULT_HUB_URL = 'https://huggingface.co';

export interface HubFile {
  path: string;
  content: Blob;
}

export interface PushInput {
  repo: string;
  token: string;
  hubUrl?: string;
  private?: boolean;
  /** adapter_config.json, adapter_model.safetensors and, if there is one, webtune-run.json. */
  adapter: Record<string, Blob | Uint8Array>;
  /** A merged model folder, uploaded under merged/. */
  merged?: HubFile[];
  /** For tests and hosts with their own fetch. */
  fetch?: typeof fetch;
}

export function checkRepoId(repo: string): void {
  if (!/^[\w.-]+\/[\w.-]+$/.test(repo)) throw new UsageError(`The repository must be owner/name, got "${repo}".`, 'For example: your-name/cups-lora.', { field: 'repo' });
}

const blob = (b: Blob | Uint8Array) => (b instanceof Blob ? b : new Blob([b as Uint8Array<ArrayBuffer>]));
const adapterError = (m: string, h: string, d: Record<string, unknown>) => new AdapterFileError(m, h, d);

/** Every file of the commit, the model card and loss curve made from the config and run record.
 *  Checks the adapter's config and record before anything is sent. */
export async function pushFiles(repo: string, adapter: PushInput['adapter'], merged: HubFile[] = []): Promise<HubFile[]> {
  const cfgBytes = adapter[ADAPTER_CONFIG_FILE], weights = adapter[ADAPTER_WEIGHTS_FILE];
  if (!cfgBytes || !weights) {
    const missing = !cfgBytes ? ADAPTER_CONFIG_FILE : ADAPTER_WEIGHTS_FILE;
    throw new AdapterFileError(`${missing} is missing.`, 'An adapter upload needs both PEFT files.', { file: missing });
  }
  const bytes = async (b: Blob | Uint8Array) => (b instanceof Blob ? new Uint8Array(await b.arrayBuffer()) : b);
  const config = parseAdapterConfig(parseJsonBytes(ADAPTER_CONFIG_FILE, await bytes(cfgBytes), adapterError), ADAPTER_CONFIG_FILE);
  const rec = adapter[RUN_RECORD_FILE];
  const record: RunRecord | null = rec ? parseRunRecord(parseJsonBytes(RUN_RECORD_FILE, await bytes(rec), adapterError), RUN_RECORD_FILE) : null;
  const files: HubFile[] = [ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, ...(record ? [RUN_RECORD_FILE] : [])].map((path) => ({ path, content: blob(adapter[path]) }));
  files.push(...merged.map((f) => ({ path: `merged/${f.path}`, content: f.content })));
  files.push({ path: 'README.md', content: new Blob([modelCard({ repo, config, record, merged: merged.length > 0 })]) });
  if (record?.history.length) files.push({ path: LOSS_CURVE_FILE, content: new Blob([lossCurveSvg(record.history)]) });
  return files;
}

/** Creates the repository if needed and commits the files; typed HubUploadError on failure. */
export async function pushAdapter(p: PushInput): Promise<{ url: string; commit: string | null; files: string[] }> {
  checkRepoId(p.repo);
  if (!p.token) throw new UsageError('No Hugging Face token.', 'Create a token with write access at https://huggingface.co/settings/tokens.', { field: 'token' });
  const hubUrl = p.hubUrl ?? DEFAULT_HUB_URL;
  const files = await pushFiles(p.repo, p.adapter, p.merged);
  const common = { repo: p.repo, accessToken: p.token, hubUrl, ...(p.fetch ? { fetch: p.fetch } : {}) };
  try {
    try {
      await createRepo({ ...common, private: Boolean(p.private) });
    } catch (e) {
      // An existing repository is fine (huggingface_hub's create_repo(exist_ok=True)).
      if (!(e instanceof HubApiError && e.statusCode === 409)) throw e;
    }
    const out = await uploadFiles({ ...common, files, commitTitle: 'Upload LoRA adapter trained with webtune', useXet: false });
    return { url: `${hubUrl}/${p.repo}`, commit: out?.commit.oid ?? null, files: files.map((f) => f.path) };
  } catch (e) {
    if (e instanceof WebtuneError) throw e;
    const status = e instanceof HubApiError ? e.statusCode : undefined;
    throw new HubUploadError(
      `Upload to ${hubUrl}/${p.repo} failed${status ? ` (HTTP ${status})` : ''}: ${(e as Error).message}`,
      status === 401 || status === 403 ? 'Check that the token has write access to this repository or organization.' : 'Nothing was committed; check the network and try again.',
      { repo: p.repo, status },
    );
  }
}
