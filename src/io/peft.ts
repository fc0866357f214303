// PEFT LoRA adapter files: adapter_config.json and adapter_model.safetensors (docs/peft.md).
//
// - The config is written with the long-standing keys only: PEFT < 0.14 raises TypeError on any
//   key it does not know, and newer PEFT ignores missing ones. Formatting follows
//   `json.dumps(d, indent=2, sort_keys=True)` (PeftConfigMixin.save_pretrained), floats included,
//   and `inference_mode` is true as PeftModel.save_pretrained forces it.
// - Weights use PEFT's saved key names, `base_model.model.<module path>.lora_{A,B}.weight` (the
//   adapter name stripped), shapes lora_A (r, in) and lora_B (out, r), F32, metadata {"format":"pt"}.
// - Reading validates everything against the model's sizes and raises AdapterFileError naming the
//   file and the key: unknown keys, missing keys, shapes, a rank that disagrees with `r`.
// Features PEFT has and we do not (DoRA, rank/alpha patterns, LoRA biases, modules_to_save) are
// refused on read with the field named, never silently dropped.

import { AdapterFileError, ModelFileError } from '../errors.ts';
import { type ByteSource, parseJsonBytes, readJsonSource } from './byte-source.ts';
import { type CheckpointModule, checkpointModules, type DecoderDims, linearModulePath, linearShape } from './hf-names.ts';
import { FLOAT_DTYPES, SafetensorsFile, type TensorInfo, writeSafetensors } from './safetensors.ts';

export const ADAPTER_CONFIG_FILE = 'adapter_config.json';
export const ADAPTER_WEIGHTS_FILE = 'adapter_model.safetensors';

export interface LoraConfig {
  r: number;
  loraAlpha: number;
  loraDropout: number;
  /** As written in the file: short module names (["q_proj","v_proj"]), full-name suffixes, or a
   *  single string that is "all-linear" or a regex matched against the whole module name. */
  targetModules: string[] | string;
  /** PEFT `layers_to_transform`: restrict to these layer indices (null = all). */
  layersToTransform: number[] | null;
  useRslora: boolean;
  initLoraWeights: boolean;
  baseModelNameOrPath: string | null;
  revision: string | null;
  taskType: string | null;
}

/** A LoraConfig from the training choices (rank, alpha, dropout, targets; the recipe's defaults are
 *  DEFAULT_LORA in src/model/lora.ts), the other fields at PEFT's own LoraConfig defaults. */
export function loraConfig(
  fields: Pick<LoraConfig, 'r' | 'loraAlpha' | 'loraDropout' | 'targetModules'> & Partial<LoraConfig>,
): LoraConfig {
  return {
    layersToTransform: null, useRslora: false, initLoraWeights: true, baseModelNameOrPath: null, revision: null, taskType: 'CAUSAL_LM',
    ...fields,
  };
}

export function loraKey(layer: number, module: CheckpointModule, which: 'A' | 'B'): string {
  return `base_model.model.${linearModulePath(layer, module)}.lora_${which}.weight`;
}

export interface LoraTarget {
  layer: number;
  module: CheckpointModule;
}

/** The (layer, module) pairs a config targets, with PEFT's matching rules (tuners_utils
 *  `check_target_module_exists`): a list entry matches a module whose name equals it or ends with
 *  "." + entry; a string is "all-linear" or a regex fullmatched against the name. */
export function resolveTargets(dims: DecoderDims, cfg: Pick<LoraConfig, 'targetModules' | 'layersToTransform'>, file = ADAPTER_CONFIG_FILE): LoraTarget[] {
  const names: { layer: number; module: CheckpointModule; path: string }[] = [];
  const modules = checkpointModules(dims);
  for (let i = 0; i < dims.numLayers; i++) for (const m of modules) names.push({ layer: i, module: m, path: linearModulePath(i, m) });
  let matches: (path: string) => boolean;
  const t = cfg.targetModules;
  if (typeof t === 'string') {
    if (t === 'all-linear') matches = () => true;
    else {
      const risk = backtrackingRisk(t);
      if (risk) {
        throw new AdapterFileError(`${file}: target_modules regex ${JSON.stringify(t)} ${risk}, which can make matching run for hours.`,
          'Use a list of module names such as ["q_proj", "v_proj"], or a simpler regex such as ".*\\.(q_proj|v_proj)".', { file, field: 'target_modules' });
      }
      let re: RegExp;
      try {
        re = new RegExp(`^(?:${t})$`);
      } catch {
        throw new AdapterFileError(`${file}: target_modules regex ${JSON.stringify(t)} is not valid.`, 'Use a list of module names such as ["q_proj", "v_proj"].', { file, field: 'target_modules' });
      }
      matches = (p) => re.test(p);
    }
  } else {
    for (const entry of t) {
      if (!names.some((n) => n.path === entry || n.path.endsWith(`.${entry}`))) {
        throw new AdapterFileError(
          `${file}: target module "${entry}" is not a linear layer of this model (have ${modules.join(', ')}).`,
          'LoRA here applies to the attention and MLP projections only; the adapter was made for another model or targets embeddings / lm_head.',
          { file, field: 'target_modules', module: entry });
      }
    }
    matches = (p) => t.some((entry) => p === entry || p.endsWith(`.${entry}`));
  }
  const layers = cfg.layersToTransform ? new Set(cfg.layersToTransform) : null;
  const out = names.filter((n) => matches(n.path) && (!layers || layers.has(n.layer))).map(({ layer, module }) => ({ layer, module }));
  if (out.length === 0) {
    throw new AdapterFileError(`${file}: target_modules ${JSON.stringify(t)} matches no layer of this model.`,
      `Target ${modules.join(', ')}.`, { file, field: 'target_modules' });
  }
  return out;
}

/** Why a regex could backtrack exponentially (or with a huge polynomial) on a module name, or null.
 *  JavaScript regexes backtrack, and so does Python's `re` that PEFT uses, so "(.*)*x" hangs both;
 *  a fuzzed adapter_config.json found it here. We refuse the classic shapes before matching: a
 *  repeated group that itself holds a quantifier or an alternation ("(a+)+", "(a|a)*"), and more
 *  than four unbounded quantifiers in all (".*.*.*.*.*x" is n^5 on an n-character name). Real
 *  target_modules regexes (".*\.(q_proj|v_proj)", "model.layers.[0-9]+.self_attn.(q|v)_proj")
 *  pass. */
export function backtrackingRisk(source: string): string | null {
  const groups: { quantified: boolean; alternation: boolean }[] = [];
  let unbounded = 0;
  let lastGroup: { quantified: boolean; alternation: boolean } | null = null;
  for (let i = 0; i < source.length; i++) {
    const c = source[i];
    let quantifier: 'bounded' | 'unbounded' | 'optional' | null = null;
    let end = i;
    if (c === '\\') {
      i++;
      lastGroup = null;
      continue;
    }
    if (c === '[') {
      // A character class is one atom: skip to its closing bracket.
      for (i++; i < source.length && source[i] !== ']'; i++) if (source[i] === '\\') i++;
      lastGroup = null;
      continue;
    }
    if (c === '(') {
      groups.push({ quantified: false, alternation: false });
      lastGroup = null;
      continue;
    }
    if (c === ')') {
      lastGroup = groups.pop() ?? null;
      // What a group holds, its enclosing group holds too: "((a+))+" nests as much as "(a+)+".
      const parent = groups[groups.length - 1];
      if (parent && lastGroup) {
        parent.quantified ||= lastGroup.quantified;
        parent.alternation ||= lastGroup.alternation;
      }
      continue;
    }
    if (c === '|') {
      if (groups.length) groups[groups.length - 1].alternation = true;
      lastGroup = null;
      continue;
    }
    if (c === '*' || c === '+') quantifier = 'unbounded';
    else if (c === '?') quantifier = 'optional';
    else if (c === '{') {
      const m = /^\{(\d*)(,?)(\d*)\}/.exec(source.slice(i));
      if (m) {
        quantifier = m[2] && !m[3] ? 'unbounded' : 'bounded';
        end = i + m[0].length - 1;
      }
    }
    if (quantifier === null) {
      lastGroup = null;
      continue;
    }
    // A lazy or possessive marker after a quantifier is part of it.
    if (source[end + 1] === '?' && quantifier !== 'optional') end++;
    if (quantifier === 'unbounded') unbounded++;
    if (quantifier !== 'optional') {
      if (lastGroup && (lastGroup.quantified || lastGroup.alternation)) {
        return lastGroup.quantified ? 'repeats a group that is itself repeated' : 'repeats a group of alternatives';
      }
      if (groups.length) groups[groups.length - 1].quantified = true;
    } else if (lastGroup?.quantified && groups.length) {
      groups[groups.length - 1].quantified = true;
    }
    lastGroup = null;
    i = end;
  }
  return unbounded > 4 ? `has ${unbounded} unbounded repetitions` : null;
}

export interface AdapterTensorSpec {
  key: string;
  shape: [number, number];
  layer: number;
  module: CheckpointModule;
  which: 'A' | 'B';
}

/** Every tensor the adapter file holds, with its shape: lora_A (r, in), lora_B (out, r). */
export function adapterTensorSpecs(dims: DecoderDims, cfg: LoraConfig): AdapterTensorSpec[] {
  const specs: AdapterTensorSpec[] = [];
  for (const { layer, module } of resolveTargets(dims, cfg)) {
    const [out, inp] = linearShape(dims, module);
    specs.push({ key: loraKey(layer, module, 'A'), shape: [cfg.r, inp], layer, module, which: 'A' });
    specs.push({ key: loraKey(layer, module, 'B'), shape: [out, cfg.r], layer, module, which: 'B' });
  }
  return specs;
}

// ---------------------------------------------------------------------------------------------
// adapter_config.json

/** Python's float repr: always a '.' or an exponent, exponent with at least two digits. */
function pyFloat(x: number): string {
  if (!Number.isFinite(x)) throw new AdapterFileError(`Cannot write ${x} in adapter_config.json.`, 'Use finite LoRA settings.', {});
  if (Number.isInteger(x) && Math.abs(x) < 1e16) return `${x}.0`;
  const ax = Math.abs(x);
  if (ax >= 1e-4 && ax < 1e16) return String(x);
  const [m, e] = x.toExponential().split('e');
  const sign = e.startsWith('-') ? '-' : '+';
  const digits = e.replace(/^[+-]/, '').padStart(2, '0');
  return `${m}e${sign}${digits}`;
}

type PyValue = null | boolean | string | { int: number } | { float: number } | PyValue[] | { [k: string]: PyValue };

/** json.dumps(v, indent=2, sort_keys=True) with ensure_ascii (the default). */
function pyDumps(v: PyValue, indent = ''): string {
  if (v === null) return 'null';
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'string') return JSON.stringify(v).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  if (Array.isArray(v)) {
    if (v.length === 0) return '[]';
    const inner = indent + '  ';
    return `[\n${v.map((x) => inner + pyDumps(x, inner)).join(',\n')}\n${indent}]`;
  }
  if ('int' in v && typeof v.int === 'number' && Object.keys(v).length === 1) return String(v.int);
  if ('float' in v && typeof v.float === 'number' && Object.keys(v).length === 1) return pyFloat(v.float);
  const keys = Object.keys(v).sort(); // Python sorts str keys by code point; these keys are ASCII
  if (keys.length === 0) return '{}';
  const inner = indent + '  ';
  const obj = v as { [k: string]: PyValue };
  return `{\n${keys.map((k) => `${inner}${pyDumps(k)}: ${pyDumps(obj[k], inner)}`).join(',\n')}\n${indent}}`;
}

/** adapter_config.json text, as PEFT's save_pretrained writes it, long-standing keys only. */
export function adapterConfigJson(cfg: LoraConfig): string {
  validateLoraNumbers(cfg, 'adapter_config.json');
  const num = (x: number): PyValue => (Number.isInteger(x) ? { int: x } : { float: x });
  const doc: { [k: string]: PyValue } = {
    alpha_pattern: {},
    base_model_name_or_path: cfg.baseModelNameOrPath,
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: cfg.initLoraWeights,
    layers_to_transform: cfg.layersToTransform ? cfg.layersToTransform.map((i) => ({ int: i })) : null,
    lora_alpha: num(cfg.loraAlpha),
    lora_dropout: { float: cfg.loraDropout },
    modules_to_save: null,
    peft_type: 'LORA',
    r: { int: cfg.r },
    rank_pattern: {},
    revision: cfg.revision,
    target_modules: typeof cfg.targetModules === 'string' ? cfg.targetModules : [...cfg.targetModules],
    task_type: cfg.taskType,
    use_dora: false,
    use_rslora: cfg.useRslora,
  };
  return pyDumps(doc);
}

function validateLoraNumbers(cfg: LoraConfig, file: string): void {
  const bad = (field: string, v: unknown, want: string) =>
    new AdapterFileError(`${file}: "${field}" must be ${want}, got ${JSON.stringify(v)}.`, 'Fix the LoRA settings.', { file, field });
  if (!Number.isSafeInteger(cfg.r) || cfg.r <= 0) throw bad('r', cfg.r, 'a positive integer');
  if (!Number.isFinite(cfg.loraAlpha) || cfg.loraAlpha <= 0) throw bad('lora_alpha', cfg.loraAlpha, 'a positive number');
  if (!Number.isFinite(cfg.loraDropout) || cfg.loraDropout < 0 || cfg.loraDropout >= 1) throw bad('lora_dropout', cfg.loraDropout, 'in [0, 1)');
}

/** Reads adapter_config.json (already parsed). Unknown keys from newer PEFT versions are ignored;
 *  features we do not implement are refused with the field named. */
export function parseAdapterConfig(json: unknown, file = ADAPTER_CONFIG_FILE): LoraConfig {
  const err = (message: string, field: string, hint: string) => new AdapterFileError(`${file}: ${message}`, hint, { file, field });
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new AdapterFileError(`${file} is not a JSON object.`, 'Choose the adapter_config.json written by PEFT.', { file });
  }
  const j = json as Record<string, unknown>;
  if (j.peft_type !== 'LORA') {
    throw err(`peft_type is ${JSON.stringify(j.peft_type ?? null)}; only "LORA" adapters are supported.`, 'peft_type', 'Choose a LoRA adapter.');
  }
  const unsupported = (field: string, isDefault: (v: unknown) => boolean, what: string) => {
    if (field in j && !isDefault(j[field])) throw err(`${field} = ${JSON.stringify(j[field])} is not supported (${what}).`, field, 'Re-train or export the adapter without this option.');
  };
  const emptyObj = (v: unknown) => v === null || (typeof v === 'object' && !Array.isArray(v) && Object.keys(v as object).length === 0);
  unsupported('use_dora', (v) => v === false || v === null, 'DoRA');
  unsupported('fan_in_fan_out', (v) => v === false || v === null, 'only for GPT-2 Conv1D layers');
  unsupported('bias', (v) => v === 'none' || v === null, 'trained biases');
  unsupported('lora_bias', (v) => v === false || v === null, 'a bias on lora_B');
  unsupported('rank_pattern', emptyObj, 'per-module ranks');
  unsupported('alpha_pattern', emptyObj, 'per-module alphas');
  unsupported('modules_to_save', (v) => v === null || (Array.isArray(v) && v.length === 0), 'fully trained extra modules');
  unsupported('layer_replication', (v) => v === null, 'layer replication');
  unsupported('use_qalora', (v) => v === false || v === null, 'QA-LoRA');

  const tm = j.target_modules;
  let targetModules: string[] | string;
  if (typeof tm === 'string') targetModules = tm;
  else if (Array.isArray(tm) && tm.length > 0 && tm.every((x) => typeof x === 'string')) targetModules = tm as string[];
  else throw err(`target_modules must be a list of module names or a string, got ${JSON.stringify(tm ?? null)}.`, 'target_modules', 'PEFT writes e.g. ["q_proj", "v_proj"].');

  let layersToTransform: number[] | null = null;
  const ltt = j.layers_to_transform;
  if (typeof ltt === 'number') layersToTransform = [ltt];
  else if (Array.isArray(ltt)) layersToTransform = ltt as number[];
  else if (ltt !== null && ltt !== undefined) throw err('layers_to_transform must be an integer or a list of them.', 'layers_to_transform', 'Fix the file.');
  if (layersToTransform && !layersToTransform.every((x) => Number.isSafeInteger(x) && x >= 0)) {
    throw err('layers_to_transform must hold non-negative integers.', 'layers_to_transform', 'Fix the file.');
  }
  // JSON's -0 is Python's 0; keep +0 so what we read writes back as the same file.
  if (layersToTransform) layersToTransform = layersToTransform.map((x) => x + 0);

  const str = (k: string) => (typeof j[k] === 'string' ? (j[k] as string) : null);
  const cfg: LoraConfig = {
    r: j.r === undefined ? 8 : (j.r as number),
    loraAlpha: j.lora_alpha === undefined ? 8 : (j.lora_alpha as number),
    loraDropout: j.lora_dropout === undefined || j.lora_dropout === null ? 0 : j.lora_dropout === 0 ? 0 : (j.lora_dropout as number), // -0 read as 0
    targetModules,
    layersToTransform,
    useRslora: j.use_rslora === true,
    initLoraWeights: j.init_lora_weights !== false,
    baseModelNameOrPath: str('base_model_name_or_path'),
    revision: str('revision'),
    taskType: str('task_type'),
  };
  // Defaults above are LoraConfig's own (r 8, alpha 8, dropout 0) for files that omit them.
  if (typeof cfg.r !== 'number') throw err('r must be a positive integer.', 'r', 'Fix the file.');
  if (typeof cfg.loraAlpha !== 'number') throw err('lora_alpha must be a number.', 'lora_alpha', 'Fix the file.');
  if (typeof cfg.loraDropout !== 'number') throw err('lora_dropout must be a number.', 'lora_dropout', 'Fix the file.');
  validateLoraNumbers(cfg, file);
  return cfg;
}

// ---------------------------------------------------------------------------------------------
// adapter_model.safetensors

/** Checks tensor names and shapes against what `cfg` implies for a model of `dims`. Throws
 *  AdapterFileError naming the first bad key; returns the specs in order. */
export function checkAdapter(
  dims: DecoderDims,
  cfg: LoraConfig,
  tensors: readonly Pick<TensorInfo, 'name' | 'shape'>[],
  file = ADAPTER_WEIGHTS_FILE,
): AdapterTensorSpec[] {
  const specs = adapterTensorSpecs(dims, cfg);
  const byKey = new Map(specs.map((s) => [s.key, s]));
  const seen = new Set<string>();
  for (const t of tensors) {
    const s = byKey.get(t.name);
    if (!s) {
      const hint = /\.lora_[AB]\.[^.]+\.weight$/.test(t.name)
        ? 'The key still contains the adapter name (e.g. ".default."); PEFT strips it when saving. Re-save with PeftModel.save_pretrained.'
        : 'The adapter targets modules not listed in its adapter_config.json, or was made for a different model.';
      throw new AdapterFileError(`${file}: unexpected tensor "${t.name}" (not a LoRA weight of the targeted modules of this model).`, hint, { file, tensor: t.name });
    }
    if (t.shape.length !== 2 || t.shape[0] !== s.shape[0] || t.shape[1] !== s.shape[1]) {
      const rankSide = s.which === 'A' ? t.shape[0] : t.shape[1];
      const rankWrong = t.shape.length === 2 && rankSide !== cfg.r;
      const msg = rankWrong
        ? `tensor "${t.name}" has shape [${t.shape}], so rank ${rankSide}, but adapter_config.json says r = ${cfg.r} (expected [${s.shape}]).`
        : `tensor "${t.name}" has shape [${t.shape}], expected [${s.shape}] for this model.`;
      throw new AdapterFileError(`${file}: ${msg}`, rankWrong ? 'The config and the weights disagree; use the adapter_config.json saved with these weights.' : 'The adapter was trained for a model of a different size; choose the base model it was trained on.',
        { file, tensor: t.name, expected: s.shape, found: [...t.shape] });
    }
    seen.add(t.name);
  }
  for (const s of specs) {
    if (!seen.has(s.key)) {
      throw new AdapterFileError(`${file}: missing tensor "${s.key}" (shape [${s.shape}]) that adapter_config.json's target_modules imply.`,
        'The weights file is incomplete or belongs to another adapter.', { file, tensor: s.key, expected: s.shape });
    }
  }
  return specs;
}

/** adapter_model.safetensors bytes. `weights` maps PEFT keys to f32 data: lora_A (r, in), lora_B (out, r). */
export function adapterSafetensors(dims: DecoderDims, cfg: LoraConfig, weights: ReadonlyMap<string, Float32Array>): Uint8Array {
  const specs = adapterTensorSpecs(dims, cfg);
  const tensors: [string, { dtype: 'F32'; shape: number[]; data: Float32Array }][] = [];
  for (const s of specs) {
    const w = weights.get(s.key);
    if (!w || w.length !== s.shape[0] * s.shape[1]) {
      throw new AdapterFileError(`Cannot write ${ADAPTER_WEIGHTS_FILE}: ${w ? `"${s.key}" has ${w.length} values, expected ${s.shape[0] * s.shape[1]}` : `no data for "${s.key}"`}.`,
        'This is a bug in the trainer; please report it.', { tensor: s.key, expected: s.shape });
    }
    tensors.push([s.key, { dtype: 'F32', shape: s.shape, data: w }]);
  }
  if (weights.size !== specs.length) {
    const extra = [...weights.keys()].find((k) => !specs.some((s) => s.key === k));
    throw new AdapterFileError(`Cannot write ${ADAPTER_WEIGHTS_FILE}: "${extra}" is not a targeted LoRA weight.`, 'This is a bug in the trainer; please report it.', { tensor: extra });
  }
  return writeSafetensors(tensors, { format: 'pt' });
}

/** Both files of an adapter, ready to write (the Node CLI writes them with writeFilesAtomic). */
export function encodeAdapter(dims: DecoderDims, cfg: LoraConfig, weights: ReadonlyMap<string, Float32Array>): Record<string, Uint8Array> {
  return {
    [ADAPTER_WEIGHTS_FILE]: adapterSafetensors(dims, cfg, weights),
    [ADAPTER_CONFIG_FILE]: new TextEncoder().encode(adapterConfigJson(cfg)),
  };
}

export interface LoadedAdapter {
  config: LoraConfig;
  specs: AdapterTensorSpec[];
  /** PEFT key -> f32 data (converted from F16/BF16 if stored so). */
  weights: Map<string, Float32Array>;
}

const adapterError = (m: string, h: string, d: Record<string, unknown>) => new AdapterFileError(m, h, d);

/** Reads and validates an adapter against a model. `config` may be the source or its text. */
export async function readAdapter(dims: DecoderDims, config: ByteSource | string, weights: ByteSource): Promise<LoadedAdapter> {
  const cfgJson = typeof config === 'string'
    ? parseJsonBytes(ADAPTER_CONFIG_FILE, new TextEncoder().encode(config), adapterError)
    : await readJsonSource(config, adapterError);
  const cfg = parseAdapterConfig(cfgJson, typeof config === 'string' ? ADAPTER_CONFIG_FILE : config.name);
  let file: SafetensorsFile;
  try {
    file = await SafetensorsFile.open(weights);
  } catch (e) {
    // Same diagnosis, adapter class: the caller shows "bad adapter", not "bad model".
    if (e instanceof ModelFileError) throw new AdapterFileError(e.message, e.hint, e.details);
    throw e;
  }
  const specs = checkAdapter(dims, cfg, file.tensors, weights.name);
  const out = new Map<string, Float32Array>();
  for (const s of specs) {
    const t = file.info(s.key);
    if (!FLOAT_DTYPES.includes(t.dtype)) {
      throw new AdapterFileError(`${weights.name}: tensor "${s.key}" has dtype ${t.dtype}; LoRA weights must be F32, F16 or BF16.`,
        'Re-save the adapter from PEFT.', { file: weights.name, tensor: s.key, dtype: t.dtype });
    }
    out.set(s.key, await file.readFloat32(s.key));
  }
  return { config: cfg, specs, weights: out };
}
