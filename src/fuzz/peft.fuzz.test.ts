// Fuzzing the PEFT adapter reader (src/io/peft.ts): adapter_config.json objects whose every field is
// sometimes a plausible value and sometimes any JSON at all, and whole adapters (config text and
// weights file) with damaged bytes. A config that parses has numbers PEFT would accept and writes
// back to the same config; everything else is an AdapterFileError naming the file.
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { bytesSource } from '../io/byte-source.ts';
import type { DecoderDims } from '../io/hf-names.ts';
import { adapterConfigJson, adapterTensorSpecs, encodeAdapter, loraConfig, parseAdapterConfig, readAdapter, resolveTargets, type LoraConfig } from '../io/peft.ts';
import { AdapterFileError } from '../errors.ts';
import { fuzz, mutatedBytes, nastyString, refusedOr } from './harness.ts';

const CONFIG = 'adapter_config.json';
const WEIGHTS = 'adapter_model.safetensors';
// C 8, F 12, H 2, Hkv 1, D 4, L 2: tiny, so a parsed config's specs are cheap to build.
const dims: DecoderDims = { numLayers: 2, hiddenSize: 8, intermediateSize: 12, numHeads: 2, numKvHeads: 1, headDim: 4 };

/** Values that break readers: wrong types, edge numbers, regexes that do not compile or backtrack. */
const oddValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
  { weight: 3, arbitrary: fc.constantFrom<unknown>(Infinity, -Infinity, NaN, -0, 0, -1, 0.5, 1, 1.5, 2 ** 53, 1e-300, '8', null, true, false, [], {}, [0], [-1], [0.5], [1e999]) },
  { weight: 2, arbitrary: fc.constantFrom<unknown>('LORA', 'lora', 'all-linear', '.*q_proj', '(', '[', '(a+)+$', '(.*)*x', 'model.layers.0.self_attn.q_proj', 'none', 'gaussian', ['q_proj'], ['lm_head'], ['q_proj', 7], { q_proj: 4 }) },
  { weight: 1, arbitrary: fc.array(nastyString, { maxLength: 3 }) },
);

const modules = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
const configKeys = ['peft_type', 'r', 'lora_alpha', 'lora_dropout', 'target_modules', 'layers_to_transform', 'use_rslora', 'init_lora_weights', 'use_dora',
  'fan_in_fan_out', 'bias', 'lora_bias', 'rank_pattern', 'alpha_pattern', 'modules_to_save', 'layer_replication', 'use_qalora', 'base_model_name_or_path', 'revision', 'task_type'];

/** The seed's adapter settings (the fields loraConfig requires). */
const SEED = { r: 8, loraAlpha: 32, loraDropout: 0.05, targetModules: ['q_proj', 'v_proj'] };

/** adapter_config.json objects as PEFT writes them (ours, and one with newer PEFT's extra keys). */
const validConfigs: Record<string, unknown>[] = [
  JSON.parse(adapterConfigJson(loraConfig(SEED))),
  JSON.parse(adapterConfigJson(loraConfig({ ...SEED, r: 4, loraAlpha: 8, targetModules: 'all-linear', useRslora: true, layersToTransform: [1] }))),
  { ...JSON.parse(adapterConfigJson(loraConfig({ ...SEED, targetModules: '.*\\.(q|v)_proj' }))), lora_bias: false, use_qalora: false, layer_replication: null, megatron_config: null, exclude_modules: null },
];

/** A valid config with one to four fields set to an odd value or removed. */
const configObject = fc.tuple(
  fc.constantFrom(...validConfigs),
  fc.array(fc.tuple(fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...configKeys) }, { weight: 1, arbitrary: nastyString }), fc.option(oddValue, { nil: undefined })), { minLength: 1, maxLength: 4 }),
).map(([base, edits]) => {
  const cfg: Record<string, unknown> = structuredClone(base);
  for (const [k, value] of edits) {
    if (value === undefined) delete cfg[k];
    // A copy: constants are shared between cases.
    else Object.defineProperty(cfg, k, { value: structuredClone(value), enumerable: true, writable: true, configurable: true });
  }
  return cfg;
});

function checkParsed(cfg: LoraConfig): void {
  expect(Number.isSafeInteger(cfg.r) && cfg.r > 0).toBe(true);
  expect(Number.isFinite(cfg.loraAlpha) && cfg.loraAlpha > 0).toBe(true);
  expect(cfg.loraDropout >= 0 && cfg.loraDropout < 1).toBe(true);
  if (cfg.layersToTransform) expect(cfg.layersToTransform.every((i) => Number.isSafeInteger(i) && i >= 0)).toBe(true);
}

fuzz('adapter_config.json fields of any type', configObject, async (json) => {
  const cfg = await refusedOr(CONFIG, () => parseAdapterConfig(json, CONFIG));
  if (!cfg) return;
  checkParsed(cfg);
  // What we read, we can write, and reading it back gives the same settings.
  expect(parseAdapterConfig(JSON.parse(adapterConfigJson(cfg)), CONFIG)).toEqual(cfg);
  const targets = await refusedOr(CONFIG, () => resolveTargets(dims, cfg, CONFIG));
  if (targets) expect(adapterTensorSpecs(dims, cfg).length).toBe(2 * targets.length);
});

/** A valid adapter for `dims`, as the trainer writes it. */
const validAdapter = fc.record({
  r: fc.integer({ min: 1, max: 4 }),
  targets: fc.subarray(modules, { minLength: 1 }),
  rslora: fc.boolean(),
}).map(({ r, targets, rslora }) => {
  const cfg = loraConfig({ ...SEED, r, targetModules: targets, useRslora: rslora });
  const weights = new Map(adapterTensorSpecs(dims, cfg).map((s) => [s.key, new Float32Array(s.shape[0] * s.shape[1]).fill(0.25)]));
  return encodeAdapter(dims, cfg, weights);
});

fuzz('adapter files (config text and weights) with damaged bytes', fc.tuple(validAdapter, fc.nat(2)).chain(([files, which]) => {
  const c = fc.constant(files[CONFIG]), w = fc.constant(files[WEIGHTS]);
  return fc.tuple(which === 1 ? c : mutatedBytes(c), which === 0 ? w : mutatedBytes(w));
}), async ([config, weights]) => {
  const a = await refusedOr([CONFIG, WEIGHTS], () => readAdapter(dims, bytesSource(CONFIG, config), bytesSource(WEIGHTS, weights)));
  if (!a) return;
  checkParsed(a.config);
  for (const s of a.specs) expect(a.weights.get(s.key)?.length).toBe(s.shape[0] * s.shape[1]);
});

// Errors of the adapter reader are always the adapter class (the UI says "bad adapter", not "bad
// model"), checked once here rather than per case.
fuzz('adapter errors are AdapterFileError', mutatedBytes(validAdapter.map((f) => f[WEIGHTS])), async (weights) => {
  const files = encodeAdapter(dims, loraConfig(SEED), new Map(adapterTensorSpecs(dims, loraConfig(SEED)).map((s) => [s.key, new Float32Array(s.shape[0] * s.shape[1])])));
  try {
    await readAdapter(dims, bytesSource(CONFIG, files[CONFIG]), bytesSource(WEIGHTS, weights));
  } catch (e) {
    expect(e).toBeInstanceOf(AdapterFileError);
  }
});

// Failures the fuzzer found, kept as named cases (seed and path from the run that found them).
describe('adapter_config.json fuzz regressions', () => {
  test('a backtracking target_modules regex is refused before it hangs matching (seed 1058753568, path 404)', () => {
    // "(.*)*x" against "model.layers.0.self_attn.q_proj" ran for minutes (exponential backtracking).
    for (const t of ['(.*)*x', '(a+)+$', '(a|a)*b', '.*.*.*.*.*x']) {
      const cfg = parseAdapterConfig({ ...validConfigs[0], target_modules: t }, CONFIG);
      expect(() => resolveTargets(dims, cfg, CONFIG), t).toThrow(AdapterFileError);
    }
    // Real regexes still work.
    expect(resolveTargets(dims, parseAdapterConfig({ ...validConfigs[0], target_modules: '.*\\.(q_proj|v_proj)' }, CONFIG), CONFIG)).toHaveLength(4);
  });

  test('-0 in layers_to_transform and lora_dropout reads as 0 and writes back the same (seed 555788804, path 343:5)', () => {
    const cfg = parseAdapterConfig({ ...validConfigs[0], layers_to_transform: -0, lora_dropout: -0 }, CONFIG);
    expect(Object.is(cfg.layersToTransform![0], 0) && Object.is(cfg.loraDropout, 0)).toBe(true);
    expect(parseAdapterConfig(JSON.parse(adapterConfigJson(cfg)), CONFIG)).toEqual(cfg);
  });
});
