import { describe, expect, test } from 'vitest';
import { AdapterFileError } from '../errors.ts';
import { bytesSource } from './byte-source.ts';
import type { DecoderDims } from './hf-names.ts';
import {
  adapterConfigJson, adapterSafetensors, adapterTensorSpecs, checkAdapter, encodeAdapter, loraConfig, loraKey, type LoraConfig,
  parseAdapterConfig, readAdapter, resolveTargets,
} from './peft.ts';
import { SafetensorsFile, writeSafetensors } from './safetensors.ts';

// C 16, F 24, H 4, Hkv 2, D 4, L 2
const dims: DecoderDims = { numLayers: 2, hiddenSize: 16, intermediateSize: 24, numHeads: 4, numKvHeads: 2, headDim: 4 };

/** A config with the seed recipe's training choices (r 8, alpha 32, dropout 0.05, q_proj and v_proj),
 *  written out here because the io layer has no recipe of its own. */
function config(o: Partial<LoraConfig> = {}): LoraConfig {
  return loraConfig({ r: 8, loraAlpha: 32, loraDropout: 0.05, targetModules: ['q_proj', 'v_proj'], ...o });
}

function weightsFor(cfg: LoraConfig): Map<string, Float32Array> {
  let seed = 1;
  return new Map(adapterTensorSpecs(dims, cfg).map((s) => [s.key, Float32Array.from({ length: s.shape[0] * s.shape[1] }, () => (seed = (seed * 48271) % 2147483647) / 2147483647 - 0.5)]));
}

async function adapterError(p: Promise<unknown>): Promise<AdapterFileError> {
  const e = await p.then(() => null, (x: unknown) => x);
  expect(e).toBeInstanceOf(AdapterFileError);
  return e as AdapterFileError;
}

describe('adapter_config.json', () => {
  test('written like PEFT: json.dumps(indent=2, sort_keys=True), long-standing keys only, inference_mode true', () => {
    const text = adapterConfigJson(config({ baseModelNameOrPath: 'HuggingFaceTB/SmolLM2-135M', loraDropout: 0 }));
    expect(text).toBe(`{
  "alpha_pattern": {},
  "base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M",
  "bias": "none",
  "fan_in_fan_out": false,
  "inference_mode": true,
  "init_lora_weights": true,
  "layers_to_transform": null,
  "lora_alpha": 32,
  "lora_dropout": 0.0,
  "modules_to_save": null,
  "peft_type": "LORA",
  "r": 8,
  "rank_pattern": {},
  "revision": null,
  "target_modules": [
    "q_proj",
    "v_proj"
  ],
  "task_type": "CAUSAL_LM",
  "use_dora": false,
  "use_rslora": false
}`);
    expect(adapterConfigJson(config({ loraDropout: 0.05, loraAlpha: 16.5 }))).toMatch(/"lora_alpha": 16.5,\n  "lora_dropout": 0.05,/);
    expect(adapterConfigJson(config({ loraDropout: 0.00005 }))).toContain('"lora_dropout": 5e-05,');
    expect(adapterConfigJson(config({ baseModelNameOrPath: 'modèle' }))).toContain('"mod\\u00e8le"');
  });

  test('round trip, and a file from current PEFT with many newer keys parses', () => {
    const cfg = config({ r: 16, loraAlpha: 32, targetModules: 'all-linear', useRslora: true, baseModelNameOrPath: 'x' });
    expect(parseAdapterConfig(JSON.parse(adapterConfigJson(cfg)))).toEqual(cfg);
    const fromPeft = {
      task_type: 'CAUSAL_LM', peft_type: 'LORA', auto_mapping: null, peft_version: '0.20.1.dev0', base_model_name_or_path: 'm', revision: null,
      inference_mode: true, r: 8, target_modules: ['v_proj', 'q_proj'], exclude_modules: null, lora_alpha: 32, lora_dropout: 0.05,
      fan_in_fan_out: false, bias: 'none', use_rslora: false, modules_to_save: null, init_lora_weights: true, layers_to_transform: null,
      layers_pattern: null, rank_pattern: {}, alpha_pattern: {}, megatron_config: null, megatron_core: 'megatron.core', trainable_token_indices: null,
      loftq_config: {}, eva_config: null, corda_config: null, use_dora: false, layer_replication: null, lora_bias: false, target_parameters: null,
      ensure_weight_tying: false, use_qalora: false, qalora_group_size: 16,
    };
    expect(parseAdapterConfig(fromPeft)).toMatchObject({ r: 8, loraAlpha: 32, loraDropout: 0.05, targetModules: ['v_proj', 'q_proj'] });
  });

  test('unsupported features and bad fields are refused with the field named', () => {
    const base = { peft_type: 'LORA', r: 8, lora_alpha: 16, target_modules: ['q_proj'] };
    const field = (j: object) => {
      try { parseAdapterConfig(j); } catch (e) { expect(e).toBeInstanceOf(AdapterFileError); return (e as AdapterFileError).details.field; }
      return 'no error';
    };
    expect(field({ ...base, use_dora: true })).toBe('use_dora');
    expect(field({ ...base, rank_pattern: { q_proj: 4 } })).toBe('rank_pattern');
    expect(field({ ...base, modules_to_save: ['lm_head'] })).toBe('modules_to_save');
    expect(field({ ...base, bias: 'all' })).toBe('bias');
    expect(field({ ...base, peft_type: 'IA3' })).toBe('peft_type');
    expect(field({ ...base, r: 0 })).toBe('r');
    expect(field({ ...base, target_modules: [] })).toBe('target_modules');
    expect(field(base)).toBe('no error');
  });
});

describe('adapter_model.safetensors', () => {
  test('PEFT key names and shapes: lora_A (r, in), lora_B (out, r), GQA-sized k/v', () => {
    const specs = adapterTensorSpecs(dims, config({ r: 4, targetModules: ['q_proj', 'k_proj', 'down_proj'] }));
    expect(specs.filter((s) => s.layer === 0).map((s) => [s.key, s.shape])).toEqual([
      ['base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', [4, 16]],
      ['base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight', [16, 4]],
      ['base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight', [4, 16]],
      ['base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight', [8, 4]],
      ['base_model.model.model.layers.0.mlp.down_proj.lora_A.weight', [4, 24]],
      ['base_model.model.model.layers.0.mlp.down_proj.lora_B.weight', [16, 4]],
    ]);
    expect(specs.length).toBe(12);
  });

  test('target matching: all-linear, suffixes, regex, layers_to_transform; unknown module refused', () => {
    expect(resolveTargets(dims, { targetModules: 'all-linear', layersToTransform: null }).length).toBe(14);
    expect(resolveTargets(dims, { targetModules: ['self_attn.o_proj'], layersToTransform: [1] })).toEqual([{ layer: 1, module: 'o_proj' }]);
    expect(resolveTargets(dims, { targetModules: String.raw`.*\.0\.mlp\.(gate|up)_proj`, layersToTransform: null })).toEqual([{ layer: 0, module: 'gate_proj' }, { layer: 0, module: 'up_proj' }]);
    expect(() => resolveTargets(dims, { targetModules: ['c_attn'], layersToTransform: null })).toThrow(/"c_attn" is not a linear layer/);
  });

  test('write then read gives identical weights and a {"format":"pt"} header', async () => {
    const cfg = config({ r: 4, targetModules: ['q_proj', 'v_proj', 'gate_proj'] });
    const w = weightsFor(cfg);
    const files = encodeAdapter(dims, cfg, w);
    expect(Object.keys(files)).toEqual(['adapter_model.safetensors', 'adapter_config.json']); // config renamed last
    const st = await SafetensorsFile.open(bytesSource('adapter_model.safetensors', files['adapter_model.safetensors']));
    expect(st.metadata).toEqual({ format: 'pt' });
    expect(st.tensors.every((t) => t.dtype === 'F32')).toBe(true);
    const back = await readAdapter(dims, bytesSource('adapter_config.json', files['adapter_config.json']), bytesSource('adapter_model.safetensors', files['adapter_model.safetensors']));
    expect(back.config).toEqual(cfg);
    expect([...back.weights.keys()].sort()).toEqual([...w.keys()].sort());
    for (const [k, v] of w) expect(back.weights.get(k)).toEqual(v);
  });

  test('F16 / BF16 adapters load, converted to f32', async () => {
    const cfg = config({ r: 2, targetModules: ['q_proj'] });
    const tensors = adapterTensorSpecs(dims, cfg).map((s) => [s.key, { dtype: 'BF16' as const, shape: s.shape, data: new Uint16Array(s.shape[0] * s.shape[1]).fill(0x3f80) }] as const);
    const back = await readAdapter(dims, adapterConfigJson(cfg), bytesSource('a.safetensors', writeSafetensors(tensors)));
    expect(back.weights.get(loraKey(1, 'q_proj', 'B'))!.every((x) => x === 1)).toBe(true);
  });

  test('an adapter whose shapes do not fit the model names the key, expected and found', async () => {
    const cfg = config({ r: 4, targetModules: ['q_proj'] });
    const bigger = { ...dims, hiddenSize: 32, numHeads: 8 };
    const bytes = adapterSafetensors(bigger, cfg, new Map(adapterTensorSpecs(bigger, cfg).map((s) => [s.key, new Float32Array(s.shape[0] * s.shape[1])])));
    const e = await adapterError(readAdapter(dims, adapterConfigJson(cfg), bytesSource('adapter_model.safetensors', bytes)));
    expect(e.details).toMatchObject({ file: 'adapter_model.safetensors', tensor: 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', expected: [4, 16], found: [4, 32] });
  });

  test('rank disagreeing with r, missing keys, keys with the adapter name left in, a truncated file', async () => {
    const cfg4 = config({ r: 4, targetModules: ['v_proj'] });
    const cfg8 = config({ r: 8, targetModules: ['v_proj'] });
    const r4 = adapterSafetensors(dims, cfg4, weightsFor(cfg4));
    const e = await adapterError(readAdapter(dims, adapterConfigJson(cfg8), bytesSource('adapter_model.safetensors', r4)));
    expect(e.message).toMatch(/rank 4, but adapter_config.json says r = 8/);

    const specs = adapterTensorSpecs(dims, cfg4);
    const partial = specs.slice(0, -1).map((s) => ({ name: s.key, shape: s.shape }));
    expect(() => checkAdapter(dims, cfg4, partial)).toThrow(/missing tensor "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"/);

    const named = specs.map((s) => ({ name: s.key.replace('.weight', '.default.weight'), shape: s.shape }));
    let err: unknown;
    try { checkAdapter(dims, cfg4, named); } catch (x) { err = x; }
    expect(err).toBeInstanceOf(AdapterFileError);
    expect((err as AdapterFileError).hint).toMatch(/adapter name/);

    const truncated = await adapterError(readAdapter(dims, adapterConfigJson(cfg4), bytesSource('adapter_model.safetensors', r4.subarray(0, r4.length - 4))));
    expect(truncated.details).toMatchObject({ file: 'adapter_model.safetensors', reason: 'truncated' });
  });

  test('the writer refuses weights of the wrong size', () => {
    const cfg = config({ r: 2, targetModules: ['q_proj'] });
    const w = weightsFor(cfg);
    w.set(loraKey(0, 'q_proj', 'A'), new Float32Array(3));
    expect(() => adapterSafetensors(dims, cfg, w)).toThrow(AdapterFileError);
  });
});
