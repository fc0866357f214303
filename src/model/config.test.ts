import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { ModelFileError } from '../errors.ts';
import { parseModelConfig, type ModelConfig } from './config.ts';
import { ropeInvFreq } from './rope.ts';

// Shapes as published in these checkpoints' config.json on the Hugging Face Hub.
const smollm2 = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: 49152, hidden_size: 576, intermediate_size: 1536,
  num_hidden_layers: 30, num_attention_heads: 9, num_key_value_heads: 3, rms_norm_eps: 1e-5, rope_theta: 100000,
  tie_word_embeddings: true, max_position_embeddings: 8192, bos_token_id: 1, eos_token_id: 2, hidden_act: 'silu', torch_dtype: 'bfloat16',
};
const llama31 = {
  model_type: 'llama', vocab_size: 128256, hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32, num_attention_heads: 32,
  num_key_value_heads: 8, head_dim: 128, rms_norm_eps: 1e-5, rope_theta: 500000.0, max_position_embeddings: 131072,
  rope_scaling: { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192, rope_type: 'llama3' },
  bos_token_id: 128000, eos_token_id: [128001, 128008, 128009],
};
const qwen25 = {
  architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', vocab_size: 151936, hidden_size: 896, intermediate_size: 4864,
  num_hidden_layers: 24, num_attention_heads: 14, num_key_value_heads: 2, rope_theta: 1000000.0, rms_norm_eps: 1e-6,
  tie_word_embeddings: true, use_sliding_window: false, sliding_window: 32768, max_position_embeddings: 32768, bos_token_id: 151643, eos_token_id: 151643,
};

function thrown(f: () => unknown): ModelFileError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ModelFileError);
    return e as ModelFileError;
  }
  throw new Error('expected a ModelFileError');
}

describe('parseModelConfig', () => {
  test('SmolLM2 (llama, GQA, tied): head_dim from C/H, defaults filled', () => {
    const c = parseModelConfig(smollm2);
    expect(c).toMatchObject({
      arch: 'llama', vocabSize: 49152, hiddenSize: 576, intermediateSize: 1536, numLayers: 30, numHeads: 9, numKvHeads: 3, headDim: 64,
      rmsNormEps: 1e-5, ropeTheta: 100000, tieWordEmbeddings: true, attentionBias: false, oProjBias: false, maxPositionEmbeddings: 8192,
      bosTokenId: 1, eosTokenIds: [2], slidingWindow: null, torchDtype: 'bfloat16',
    });
    expect(c.rope).toEqual({ type: 'default', factor: 1, lowFreqFactor: 1, highFreqFactor: 1, originalMaxPositionEmbeddings: 8192 });
  });

  test('Llama 3.1: llama3 rope from rope_scaling, eos list, explicit head_dim', () => {
    const c = parseModelConfig(llama31);
    expect(c.rope).toEqual({ type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 });
    expect(c.ropeTheta).toBe(500000);
    expect(c.eosTokenIds).toEqual([128001, 128008, 128009]);
    expect(c.headDim).toBe(128);
    expect(c.tieWordEmbeddings).toBe(false);
  });

  test('transformers v5 layout: rope_parameters with rope_theta inside gives the same config', () => {
    const { rope_scaling, rope_theta, ...rest } = llama31;
    const v5 = { ...rest, rope_parameters: { ...rope_scaling, rope_theta } };
    expect(parseModelConfig(v5)).toEqual(parseModelConfig(llama31));
    const plain = parseModelConfig({ ...smollm2, rope_theta: undefined, rope_parameters: { rope_type: 'default', rope_theta: 250000 } });
    expect(plain.ropeTheta).toBe(250000);
    expect(plain.rope.type).toBe('default');
  });

  test('older "type" key and linear scaling; theta defaults to 10000', () => {
    const c = parseModelConfig({ ...smollm2, rope_theta: undefined, rope_scaling: { type: 'linear', factor: 4 } });
    expect(c.rope).toMatchObject({ type: 'linear', factor: 4 });
    expect(c.ropeTheta).toBe(10000);
  });

  test('Qwen2: q/k/v biases, no o_proj bias, tied; Mistral: sliding window and defaults', () => {
    const q = parseModelConfig(qwen25);
    expect(q).toMatchObject({ arch: 'qwen2', attentionBias: true, oProjBias: false, headDim: 64, numKvHeads: 2, tieWordEmbeddings: true, eosTokenIds: [151643] });
    const m = parseModelConfig({ model_type: 'mistral', vocab_size: 32000, hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 8 });
    expect(m).toMatchObject({ arch: 'mistral', slidingWindow: 4096, maxPositionEmbeddings: 131072, rmsNormEps: 1e-6, bosTokenId: 1, eosTokenIds: [2] });
    expect(parseModelConfig({ ...smollm2, model_type: 'mistral', sliding_window: null }).slidingWindow).toBeNull();
    expect(parseModelConfig({ ...smollm2, attention_bias: true })).toMatchObject({ attentionBias: true, oProjBias: true });
  });

  test('architecture from `architectures` when model_type is absent', () => {
    const { model_type: _, ...noType } = qwen25;
    expect(parseModelConfig(noType).arch).toBe('qwen2');
  });

  test('unknown architecture lists the supported ones', () => {
    const e = thrown(() => parseModelConfig({ ...smollm2, model_type: 'gpt2', architectures: ['GPT2LMHeadModel'] }, 'gpt2/config.json'));
    expect(e.message).toContain('gpt2/config.json');
    expect(e.message).toContain('model_type "gpt2"');
    for (const s of ['llama', 'mistral', 'qwen2', 'LlamaForCausalLM', 'Qwen2ForCausalLM']) expect(e.message).toContain(s);
    expect(e.details).toMatchObject({ field: 'model_type', supported: ['llama', 'mistral', 'qwen2'] });
  });

  test('unsupported rope type and bad rope fields are clear errors naming the field', () => {
    const e = thrown(() => parseModelConfig({ ...smollm2, rope_scaling: { rope_type: 'yarn', factor: 4 } }));
    expect(e.message).toMatch(/rope type "yarn".*default, linear, llama3/);
    expect(e.details.field).toBe('rope_scaling.rope_type');
    const e2 = thrown(() => parseModelConfig({ ...llama31, rope_scaling: { ...llama31.rope_scaling, low_freq_factor: undefined } }));
    expect(e2.details.field).toBe('rope_scaling.low_freq_factor');
    const e3 = thrown(() => parseModelConfig({ ...smollm2, rope_theta: undefined, rope_parameters: { rope_type: 'dynamic', factor: 2 } }));
    expect(e3.details.field).toBe('rope_parameters.rope_type');
  });

  test('missing or malformed required fields are named', () => {
    const { hidden_size: _, ...noHidden } = smollm2;
    const e = thrown(() => parseModelConfig(noHidden));
    expect(e.details.field).toBe('hidden_size');
    expect(e.message).toContain('"hidden_size"');
    expect(thrown(() => parseModelConfig({ ...smollm2, num_hidden_layers: 2.5 })).details.field).toBe('num_hidden_layers');
    expect(thrown(() => parseModelConfig({ ...smollm2, num_key_value_heads: 2 })).details.field).toBe('num_key_value_heads');
    expect(thrown(() => parseModelConfig({ ...smollm2, hidden_size: 577 })).details.field).toBe('head_dim');
    expect(thrown(() => parseModelConfig({ ...smollm2, hidden_act: 'gelu' })).details.field).toBe('hidden_act');
    expect(thrown(() => parseModelConfig({ ...smollm2, eos_token_id: 'x' })).details.field).toBe('eos_token_id');
    expect(thrown(() => parseModelConfig([])).message).toContain('not a JSON object');
  });
});

describe('ropeInvFreq matches PyTorch (fixtures/io/torch-expected.json)', () => {
  const expected = (JSON.parse(readFileSync(new URL('../../fixtures/io/torch-expected.json', import.meta.url), 'utf8')) as { rope: Record<string, number[]> }).rope;
  const base = parseModelConfig(smollm2);
  const cases: [string, Pick<ModelConfig, 'headDim' | 'ropeTheta' | 'rope'>][] = [
    ['default_theta10000_d64', { headDim: 64, ropeTheta: 10000, rope: base.rope }],
    ['default_theta1e6_d128', { headDim: 128, ropeTheta: 1e6, rope: base.rope }],
    ['linear_theta10000_d64_f4', { headDim: 64, ropeTheta: 10000, rope: { ...base.rope, type: 'linear', factor: 4 } }],
    // Llama 3.2's rope: factor 32.
    ['llama3_theta500000_d128', { headDim: 128, ropeTheta: 500000, rope: { ...parseModelConfig(llama31).rope, factor: 32 } }],
    ['llama3_theta500000_d64_f8', { headDim: 64, ropeTheta: 500000, rope: parseModelConfig(llama31).rope }],
  ];
  test.each(cases)('%s', (name, cfg) => {
    const got = ropeInvFreq(cfg).invFreq;
    const want = expected[name];
    expect(got.length).toBe(want.length);
    // Within 2 ulp of f32: torch's vectorised powf is not correctly rounded on every CPU.
    want.forEach((w, i) => expect(Math.abs(got[i] - w), `${name}[${i}]`).toBeLessThanOrEqual(2 * 2 ** -23 * Math.abs(w)));
  });
});
