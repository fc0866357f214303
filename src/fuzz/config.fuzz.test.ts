// Fuzzing the Hugging Face config.json reader (src/model/config.ts): every field sometimes a
// plausible value and sometimes any JSON value (numbers JSON.parse can give included: 1e999 is
// Infinity), and the demo model's config.json with damaged bytes. A config that parses describes a
// model the engine can build (positive whole sizes, whole GQA groups, finite RoPE); everything else
// is a ModelFileError naming the file.
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { ModelFileError } from '../errors.ts';
import { bytesSource, readJsonSource } from '../io/byte-source.ts';
import { parseModelConfig, SUPPORTED_ARCHITECTURES, type ModelConfig } from '../model/config.ts';
import { fuzz, mutatedBytes, nastyString, refusedOr } from './harness.ts';

const FILE = 'config.json';
/** Values that break readers: wrong types, edge numbers (JSON.parse gives Infinity for 1e999), and
 *  names that every JS object already has. */
const oddValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
  { weight: 3, arbitrary: fc.constantFrom<unknown>(Infinity, -Infinity, -0, 0, -1, 0.5, 1.5, 2 ** 31, 2 ** 53, 1e-320, '8', null, true, [], {}, [2, 'x']) },
  { weight: 1, arbitrary: fc.constantFrom<unknown>('constructor', '__proto__', 'toString', 'llama', 'mistral', 'qwen2', 'default', 'linear', 'llama3', 'yarn') },
);

const ropeKeys = ['rope_type', 'type', 'factor', 'low_freq_factor', 'high_freq_factor', 'original_max_position_embeddings', 'rope_theta'];
const configKeys = ['model_type', 'architectures', 'vocab_size', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads',
  'num_key_value_heads', 'head_dim', 'rms_norm_eps', 'rope_theta', 'rope_scaling', 'rope_parameters', 'max_position_embeddings',
  'tie_word_embeddings', 'hidden_act', 'attention_bias', 'mlp_bias', 'sliding_window', 'use_sliding_window', 'bos_token_id', 'eos_token_id', 'torch_dtype', 'dtype'];

/** Valid configs of each family and RoPE layout (Llama 3.2 in v4 and v5 layouts, Mistral, Qwen2). */
const validConfigs: Record<string, unknown>[] = [
  JSON.parse(new TextDecoder().decode(readFileSync(new URL('../../public/models/demo/config.json', import.meta.url)))),
  { model_type: 'llama', vocab_size: 64, hidden_size: 32, intermediate_size: 48, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2,
    rope_theta: 500000, rope_scaling: { rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 }, eos_token_id: [1, 2] },
  { model_type: 'llama', vocab_size: 64, hidden_size: 32, intermediate_size: 48, num_hidden_layers: 2, num_attention_heads: 4,
    rope_parameters: { rope_type: 'linear', factor: 2, rope_theta: 10000 } },
  { architectures: ['MistralForCausalLM'], vocab_size: 64, hidden_size: 32, intermediate_size: 48, num_hidden_layers: 1, num_attention_heads: 4, num_key_value_heads: 1, sliding_window: 16 },
  { model_type: 'qwen2', vocab_size: 64, hidden_size: 24, intermediate_size: 48, num_hidden_layers: 1, num_attention_heads: 3, num_key_value_heads: 1, use_sliding_window: false, bos_token_id: null },
];

/** A valid config with one to four fields (top level or inside the RoPE object) set to an odd
 *  value or removed. Starting from valid configs keeps most cases past the first check, so the
 *  later checks get exercised too. */
const configObject = fc.tuple(
  fc.constantFrom(...validConfigs),
  fc.array(fc.tuple(fc.oneof(fc.constantFrom(...configKeys), fc.constantFrom(...ropeKeys).map((k) => `rope.${k}`), nastyString), fc.option(oddValue, { nil: undefined })), { minLength: 1, maxLength: 4 }),
).map(([base, edits]) => {
  const cfg: Record<string, unknown> = structuredClone(base);
  for (const [key, value] of edits) {
    let obj = cfg;
    let k = key;
    if (key.startsWith('rope.')) {
      const ropeField = cfg.rope_scaling && typeof cfg.rope_scaling === 'object' ? 'rope_scaling' : 'rope_parameters';
      if (cfg[ropeField] === null || typeof cfg[ropeField] !== 'object') cfg[ropeField] = {};
      obj = cfg[ropeField] as Record<string, unknown>;
      k = key.slice(5);
    }
    if (value === undefined) delete obj[k];
    else Object.defineProperty(obj, k, { value: structuredClone(value), enumerable: true, writable: true, configurable: true }); // a copy: constants are shared between cases
  }
  return cfg;
});

const posInt = (n: number) => Number.isSafeInteger(n) && n > 0;
const posFinite = (n: number) => Number.isFinite(n) && n > 0;

function checkParsed(c: ModelConfig): void {
  expect(Object.keys(SUPPORTED_ARCHITECTURES)).toContain(c.arch);
  for (const n of [c.vocabSize, c.hiddenSize, c.intermediateSize, c.numLayers, c.numHeads, c.numKvHeads, c.headDim, c.maxPositionEmbeddings]) {
    expect(posInt(n), `size ${n}`).toBe(true);
  }
  expect(c.numHeads % c.numKvHeads).toBe(0);
  expect(posFinite(c.rmsNormEps) && posFinite(c.ropeTheta)).toBe(true);
  expect(posFinite(c.rope.factor) && posFinite(c.rope.lowFreqFactor) && posFinite(c.rope.highFreqFactor) && posFinite(c.rope.originalMaxPositionEmbeddings)).toBe(true);
  expect(c.slidingWindow === null || posInt(c.slidingWindow)).toBe(true);
  expect(c.layerWindows.length).toBe(c.numLayers);
  expect(c.layerWindows.every((w) => w === 0 || w === c.slidingWindow)).toBe(true);
  expect(c.bosTokenId === null || Number.isSafeInteger(c.bosTokenId)).toBe(true);
  expect(c.eosTokenIds.every((t) => Number.isSafeInteger(t) && t >= 0)).toBe(true);
  expect(typeof c.tieWordEmbeddings === 'boolean' && typeof c.attentionBias === 'boolean').toBe(true);
}

fuzz('config.json fields of any type', configObject, async (obj) => {
  const c = await refusedOr(FILE, () => parseModelConfig(obj, FILE));
  if (c) checkParsed(c);
});

const demo = new TextEncoder().encode(JSON.stringify(validConfigs[0]));

fuzz('config.json bytes damaged', mutatedBytes(fc.constant(demo)), async (bytes) => {
  const c = await refusedOr(FILE, async () => parseModelConfig(await readJsonSource(bytesSource(FILE, bytes)), FILE));
  if (c) checkParsed(c);
});

// Failures the fuzzer found, kept as named cases (seed and path from the run that found them).
describe('config.json fuzz regressions', () => {
  const base = { vocab_size: 64, hidden_size: 32, intermediate_size: 48, num_hidden_layers: 1, num_attention_heads: 4, max_position_embeddings: 64 };

  test('model_type "constructor" / "__proto__" / "toString" is not an architecture (seed 869775567, path 20)', () => {
    // `mt in SUPPORTED_ARCHITECTURES` was true for names every object inherits; the config then
    // parsed with arch "constructor", no eos list and no rms_norm_eps.
    for (const mt of ['constructor', '__proto__', 'toString']) {
      expect(() => parseModelConfig({ ...base, model_type: mt }, FILE)).toThrow(/unsupported architecture/);
    }
  });

  test('rope_theta Infinity (JSON 1e999) is refused (seed 1502890950, path 6:1)', () => {
    const e = (() => {
      try {
        parseModelConfig({ ...base, model_type: 'mistral', rope_parameters: { rope_theta: JSON.parse('1e999') } }, FILE);
      } catch (x) {
        return x;
      }
    })();
    expect(e).toBeInstanceOf(ModelFileError);
    expect((e as ModelFileError).details).toMatchObject({ file: FILE, field: 'rope_theta' });
  });
});
