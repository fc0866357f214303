// A Hugging Face model folder, from whatever holds its files: a folder dropped on the page (Files),
// a Node directory (src/node/fs-source.ts), or in-memory bytes in tests. We find config.json, the
// tokenizer files and the safetensors weights (one file or shards listed by
// model.safetensors.index.json), and hand tensors out one shard and one tensor at a time.
//
// Pickle checkpoints are never read: when a folder only has *.bin / *.pt / *.pth / *.ckpt weights
// we refuse with the reason instead of falling back (safetensors SECURITY.md: "fail loudly rather
// than silently falling back to an unsafe format"). Returns the raw config object; turning it into
// a typed ModelConfig is src/model/config.ts's job (io stays a leaf module).

import { ModelFileError } from '../errors.ts';
import { type ByteSource, readJsonSource } from './byte-source.ts';
import { SafetensorsFile, type TensorInfo, pickleRefusal } from './safetensors.ts';

export const INDEX_FILE = 'model.safetensors.index.json';
export const SINGLE_FILE = 'model.safetensors';
const PICKLE_EXT = /\.(bin|pt|pth|ckpt|pkl)$/i;
/** Same cap as huggingface.js: blocks a crafted index with millions of shards. */
const MAX_SHARDS = 10_000;

/** Buffers HF checkpoints sometimes carry that are recomputed from the config, never loaded. */
export function isIgnoredTensor(name: string): boolean {
  return name.endsWith('.rotary_emb.inv_freq');
}

export interface FolderTensor extends TensorInfo {
  /** The shard file it lives in. */
  file: string;
  readFloat32(): Promise<Float32Array>;
  readBytes(): Promise<Uint8Array>;
}

export interface ModelFolder {
  /** Parsed config.json (an object); pass to parseModelConfig. */
  config: Record<string, unknown>;
  configFile: string;
  tokenizer: ByteSource | null;
  tokenizerConfig: ByteSource | null;
  generationConfig: ByteSource | null;
  /** Weight files in load order. */
  shards: string[];
  /** Every weight tensor (headers only; no tensor data read), inv_freq buffers left out. */
  tensorIndex(): Promise<Map<string, FolderTensor>>;
  /** Tensors shard by shard, in file order inside each shard; nothing is read until asked. */
  tensors(): AsyncGenerator<FolderTensor>;
}

export type FileList = Iterable<readonly [string, ByteSource]> | Record<string, ByteSource> | readonly ByteSource[];

function basename(path: string): string {
  const i = Math.max(path.lastIndexOf('/'), path.lastIndexOf('\\'));
  return i >= 0 ? path.slice(i + 1) : path;
}

function depth(path: string): number {
  return path.split(/[/\\]/).length;
}

/** Files by base name. A dropped folder gives paths like "SmolLM2/config.json"; the shallowest
 *  copy of a name wins, and two at the same depth are ambiguous. */
function indexFiles(files: FileList): Map<string, ByteSource> {
  let pairs: (readonly [string, ByteSource])[];
  if (Symbol.iterator in (files as object)) {
    // [name, source] pairs, or bare sources named by their own `name`.
    pairs = [...(files as Iterable<readonly [string, ByteSource] | ByteSource>)].map((f) => (Array.isArray(f) ? f as readonly [string, ByteSource] : [(f as ByteSource).name, f as ByteSource] as const));
  } else pairs = Object.entries(files as Record<string, ByteSource>);
  const best = new Map<string, { path: string; source: ByteSource; ambiguous: boolean }>();
  for (const [path, source] of pairs) {
    const name = basename(path);
    const cur = best.get(name);
    if (!cur || depth(path) < depth(cur.path)) best.set(name, { path, source, ambiguous: false });
    else if (depth(path) === depth(cur.path)) cur.ambiguous = true;
  }
  const out = new Map<string, ByteSource>();
  for (const [name, { path, source, ambiguous }] of best) {
    if (ambiguous && (name === 'config.json' || name.endsWith('.safetensors') || name === INDEX_FILE)) {
      throw new ModelFileError(`Two files named ${name} at the same folder depth (${path} and another).`,
        'Choose a single model folder.', { file: name });
    }
    out.set(name, source);
  }
  return out;
}

function unsafeShardName(name: string): boolean {
  return name.includes('..') || name.startsWith('/') || name.includes('\\') || name.includes('://') || name.length === 0;
}

export async function openModelFolder(fileList: FileList): Promise<ModelFolder> {
  const files = indexFiles(fileList);
  const names = [...files.keys()].sort();

  const configSource = files.get('config.json');
  if (!configSource) {
    throw new ModelFileError(`No config.json among the model files (${names.join(', ') || 'none'}).`,
      'Choose the whole Hugging Face model folder: config.json, tokenizer.json, tokenizer_config.json and the .safetensors weights.',
      { file: 'config.json', reason: 'missing-file' });
  }
  const config = await readJsonSource(configSource);
  if (typeof config !== 'object' || config === null || Array.isArray(config)) {
    throw new ModelFileError('config.json is not a JSON object.', 'The file is damaged; download it again.', { file: 'config.json' });
  }

  let shards: string[];
  let weightMap: Map<string, string> | null = null;
  if (files.has(SINGLE_FILE)) {
    shards = [SINGLE_FILE];
  } else if (files.has(INDEX_FILE)) {
    weightMap = await readIndex(files.get(INDEX_FILE)!);
    shards = [...new Set(weightMap.values())].sort();
    for (const s of shards) {
      if (PICKLE_EXT.test(s)) throw pickleRefusal(s, `is listed in ${INDEX_FILE} as a weight file`);
      if (!files.has(s)) {
        throw new ModelFileError(`${INDEX_FILE} lists the shard ${s}, which is not among the model files.`,
          'The download is incomplete; fetch every model-XXXXX-of-YYYYY.safetensors file.', { file: s, reason: 'missing-file' });
      }
    }
  } else {
    const loose = names.filter((n) => n.endsWith('.safetensors') && n !== 'adapter_model.safetensors');
    const pickles = names.filter((n) => PICKLE_EXT.test(n));
    if (loose.length === 1 && !/-\d{5,6}-of-\d{5,6}\.safetensors$/.test(loose[0])) {
      shards = loose;
    } else if (loose.length > 0) {
      throw new ModelFileError(`Found ${loose.join(', ')} but no ${INDEX_FILE} saying which tensor is in which shard.`,
        `Add the ${INDEX_FILE} file from the same repository.`, { file: INDEX_FILE, reason: 'missing-file' });
    } else if (pickles.length > 0) {
      throw pickleRefusal(pickles[0], 'is the only kind of weight file in this folder');
    } else {
      throw new ModelFileError(`No weights: neither ${SINGLE_FILE} nor ${INDEX_FILE} is among the model files (${names.join(', ')}).`,
        'Choose a folder that contains the model\'s .safetensors files.', { file: SINGLE_FILE, reason: 'missing-file' });
    }
  }

  const opened = new Map<string, SafetensorsFile>();
  // Headers are kilobytes; keep them so tensorIndex() followed by tensors() reads each once.
  async function shard(name: string): Promise<SafetensorsFile> {
    let f = opened.get(name);
    if (!f) {
      f = await SafetensorsFile.open(files.get(name)!);
      opened.set(name, f);
    }
    return f;
  }
  const wrap = (file: SafetensorsFile, t: TensorInfo): FolderTensor => ({
    ...t,
    file: file.name,
    readFloat32: () => file.readFloat32(t.name),
    readBytes: () => file.readBytes(t.name),
  });

  return {
    config: config as Record<string, unknown>,
    configFile: configSource.name,
    tokenizer: files.get('tokenizer.json') ?? null,
    tokenizerConfig: files.get('tokenizer_config.json') ?? null,
    generationConfig: files.get('generation_config.json') ?? null,
    shards,
    async tensorIndex() {
      const out = new Map<string, FolderTensor>();
      const shardOf = new Map<string, string>();
      for (const s of shards) {
        const f = await shard(s);
        for (const t of f.tensors) {
          if (isIgnoredTensor(t.name)) continue;
          const prev = out.get(t.name);
          if (prev) {
            throw new ModelFileError(`Tensor "${t.name}" is in both ${prev.file} and ${s}.`, 'The shards do not belong together; download the model again.',
              { file: s, tensor: t.name, reason: 'duplicate-tensor' });
          }
          out.set(t.name, wrap(f, t));
          shardOf.set(t.name, s);
        }
      }
      if (weightMap) {
        for (const [name, s] of weightMap) {
          if (isIgnoredTensor(name)) continue;
          if (shardOf.get(name) !== s) {
            throw new ModelFileError(`${INDEX_FILE} puts tensor "${name}" in ${s}, but ${s} does not contain it.`,
              'The index and the shards come from different versions; download them again together.', { file: s, tensor: name, reason: 'missing-tensor' });
          }
        }
      }
      return out;
    },
    async *tensors() {
      for (const s of shards) {
        const f = await shard(s);
        for (const t of f.tensors) if (!isIgnoredTensor(t.name)) yield wrap(f, t);
      }
    },
  };
}

async function readIndex(source: ByteSource): Promise<Map<string, string>> {
  const json = await readJsonSource(source);
  const bad = (what: string, extra: Record<string, unknown> = {}) =>
    new ModelFileError(`${source.name}: ${what}.`, 'The index file is damaged; download it again.', { file: source.name, ...extra });
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw bad('not a JSON object');
  const wm = (json as Record<string, unknown>).weight_map;
  if (typeof wm !== 'object' || wm === null || Array.isArray(wm)) throw bad('"weight_map" is missing or not an object', { field: 'weight_map' });
  const map = new Map<string, string>();
  const shardNames = new Set<string>();
  for (const [tensor, file] of Object.entries(wm)) {
    if (typeof file !== 'string') throw bad(`weight_map entry for "${tensor}" is not a file name`, { tensor });
    if (unsafeShardName(file)) throw bad(`weight_map names an unsafe shard file "${file}"`, { tensor, shard: file });
    shardNames.add(file);
    if (shardNames.size > MAX_SHARDS) throw bad(`more than ${MAX_SHARDS} shards`);
    map.set(tensor, file);
  }
  if (map.size === 0) throw bad('weight_map is empty', { field: 'weight_map' });
  return map;
}
