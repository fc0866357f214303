import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { ModelFileError } from '../errors.ts';
import { parseModelConfig, roundToDtype, type ModelConfig } from './config.ts';
import { ropeInvFreq } from './rope.ts';
import { expectedWeights } from './weights.ts';

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

const SUPPORTED = ['llama', 'mistral', 'qwen2', 'qwen3', 'phi3', 'gemma', 'gemma2', 'gemma3_text'];

// google/gemma-3-270m.
const gemma3_270m = {
  architectures: ['Gemma3ForCausalLM'], model_type: 'gemma3_text', vocab_size: 262144, hidden_size: 640, intermediate_size: 2048,
  num_hidden_layers: 18, num_attention_heads: 4, num_key_value_heads: 1, head_dim: 256, rms_norm_eps: 1e-6, rope_theta: 1000000,
  rope_local_base_freq: 10000, query_pre_attn_scalar: 256, sliding_window: 512, attn_logit_softcapping: null, final_logit_softcapping: null,
  layer_types: Array.from({ length: 18 }, (_, i) => ((i + 1) % 6 ? 'sliding_attention' : 'full_attention')),
  max_position_embeddings: 32768, tie_word_embeddings: true, hidden_activation: 'gelu_pytorch_tanh', rope_scaling: null,
  use_bidirectional_attention: false, bos_token_id: 2, eos_token_id: 1, pad_token_id: 0, torch_dtype: 'bfloat16',
};
// google/gemma-2-2b.
const gemma2_2b = {
  architectures: ['Gemma2ForCausalLM'], model_type: 'gemma2', vocab_size: 256000, hidden_size: 2304, intermediate_size: 9216,
  num_hidden_layers: 26, num_attention_heads: 8, num_key_value_heads: 4, head_dim: 256, rms_norm_eps: 1e-6, rope_theta: 10000,
  query_pre_attn_scalar: 256, sliding_window: 4096, attn_logit_softcapping: 50.0, final_logit_softcapping: 30.0,
  max_position_embeddings: 8192, hidden_act: 'gelu_pytorch_tanh', hidden_activation: 'gelu_pytorch_tanh', bos_token_id: 2, eos_token_id: [1, 107],
  torch_dtype: 'float32',
};
// google/gemma-2b (Gemma 1): hidden_act "gelu" in the file; GemmaConfig's class default is the tanh GELU.
const gemma_2b = {
  architectures: ['GemmaForCausalLM'], model_type: 'gemma', vocab_size: 256000, hidden_size: 2048, intermediate_size: 16384,
  num_hidden_layers: 18, num_attention_heads: 8, num_key_value_heads: 1, head_dim: 256, rms_norm_eps: 1e-6, rope_theta: 10000,
  max_position_embeddings: 8192, hidden_act: 'gelu', hidden_activation: 'gelu_pytorch_tanh', bos_token_id: 2, eos_token_id: 1, torch_dtype: 'bfloat16',
};

// Qwen/Qwen3-0.6B.
const qwen3 = {
  architectures: ['Qwen3ForCausalLM'], model_type: 'qwen3', vocab_size: 151936, hidden_size: 1024, intermediate_size: 3072,
  num_hidden_layers: 28, num_attention_heads: 16, num_key_value_heads: 8, head_dim: 128, rms_norm_eps: 1e-6, rope_theta: 1000000,
  max_position_embeddings: 40960, tie_word_embeddings: true, attention_bias: false, use_sliding_window: false, sliding_window: null,
  max_window_layers: 28, bos_token_id: 151643, eos_token_id: 151645, hidden_act: 'silu', torch_dtype: 'bfloat16',
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
    for (const s of ['llama', 'mistral', 'qwen2', 'qwen3', 'gemma3_text', 'LlamaForCausalLM', 'Qwen2ForCausalLM', 'Qwen3ForCausalLM', 'Gemma2ForCausalLM', 'phi3', 'Phi3ForCausalLM']) expect(e.message).toContain(s);
    expect(e.details).toMatchObject({ field: 'model_type', supported: SUPPORTED });
  });

  test('Qwen3: per-head q/k norms, explicit head_dim, no biases unless attention_bias (then o_proj too)', () => {
    const c = parseModelConfig(qwen3);
    expect(c).toMatchObject({
      arch: 'qwen3', vocabSize: 151936, hiddenSize: 1024, intermediateSize: 3072, numLayers: 28, numHeads: 16, numKvHeads: 8,
      headDim: 128, qkNorm: true, attentionBias: false, oProjBias: false, tieWordEmbeddings: true, ropeTheta: 1000000,
      maxPositionEmbeddings: 40960, slidingWindow: null, bosTokenId: 151643, eosTokenIds: [151645],
    });
    expect(parseModelConfig({ ...qwen3, attention_bias: true })).toMatchObject({ attentionBias: true, oProjBias: true });
    // Qwen3Config's head_dim defaults to 128, not hidden_size / num_attention_heads (64 here).
    const { head_dim: _, ...noHeadDim } = qwen3;
    expect(parseModelConfig(noHeadDim).headDim).toBe(128);
    const { model_type: __, ...noType } = qwen3;
    expect(parseModelConfig(noType).arch).toBe('qwen3');
    expect(parseModelConfig(qwen25).qkNorm).toBe(false);
  });

  test('sliding windows per layer: Mistral in every layer; Qwen2/3 from max_window_layers on, or by layer_types', () => {
    const mistral = { ...smollm2, model_type: 'mistral', num_hidden_layers: 3 };
    expect(parseModelConfig({ ...mistral, sliding_window: 5 })).toMatchObject({ slidingWindow: 5, layerWindows: [5, 5, 5] });
    expect(parseModelConfig(mistral)).toMatchObject({ slidingWindow: 4096, layerWindows: [4096, 4096, 4096] });
    expect(parseModelConfig({ ...mistral, sliding_window: null })).toMatchObject({ slidingWindow: null, layerWindows: [0, 0, 0] });
    expect(parseModelConfig(smollm2).layerWindows).toEqual(new Array(30).fill(0));
    // use_sliding_window false: sliding_window is ignored, as Qwen2Config sets it to None.
    expect(parseModelConfig(qwen25)).toMatchObject({ slidingWindow: null, layerWindows: new Array(24).fill(0) });
    const q2 = { ...qwen25, num_hidden_layers: 4, use_sliding_window: true, sliding_window: 8 };
    expect(parseModelConfig({ ...q2, max_window_layers: 2 })).toMatchObject({ slidingWindow: 8, layerWindows: [0, 0, 8, 8] });
    expect(parseModelConfig(q2).layerWindows).toEqual([0, 0, 0, 0]); // max_window_layers defaults to 28
    expect(parseModelConfig({ ...q2, max_window_layers: 0 }).layerWindows).toEqual([8, 8, 8, 8]);
    const { sliding_window: _, ...noWindow } = q2;
    expect(parseModelConfig({ ...noWindow, max_window_layers: 3 }).layerWindows).toEqual([0, 0, 0, 4096]);
    const types = ['sliding_attention', 'full_attention', 'sliding_attention', 'full_attention'];
    expect(parseModelConfig({ ...q2, layer_types: types }).layerWindows).toEqual([8, 0, 8, 0]);
    expect(parseModelConfig({ ...qwen3, num_hidden_layers: 2, use_sliding_window: true, sliding_window: 16, layer_types: ['full_attention', 'sliding_attention'] }).layerWindows).toEqual([0, 16]);
    expect(thrown(() => parseModelConfig({ ...q2, layer_types: ['full_attention'] })).details.field).toBe('layer_types');
    expect(thrown(() => parseModelConfig({ ...q2, max_window_layers: -1 })).details.field).toBe('max_window_layers');
  });

  test('Phi-3.5-mini and Phi-3-mini-4k: fused checkpoint modules, LongRoPE, the sliding window', () => {
    // The fields of microsoft/Phi-3.5-mini-instruct's config.json (factor lists shortened to their
    // length: 48 = head_dim / 2) and of Phi-3-mini-4k-instruct's (no rope_scaling, window 2047).
    const factors = Array.from({ length: 48 }, (_, i) => 1 + i / 8);
    const phi35 = {
      architectures: ['Phi3ForCausalLM'], model_type: 'phi3', vocab_size: 32064, hidden_size: 3072, intermediate_size: 8192,
      num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 32, max_position_embeddings: 131072,
      original_max_position_embeddings: 4096, rms_norm_eps: 1e-5, rope_theta: 10000.0, sliding_window: 262144,
      rope_scaling: { type: 'longrope', short_factor: factors, long_factor: factors.map((x) => 2 * x) },
      tie_word_embeddings: false, bos_token_id: 1, eos_token_id: 32000, pad_token_id: 32000, hidden_act: 'silu', torch_dtype: 'bfloat16',
    };
    const c = parseModelConfig(phi35);
    expect(c).toMatchObject({ arch: 'phi3', fusedProjections: true, headDim: 96, rmsNormEps: 1e-5, slidingWindow: 262144, eosTokenIds: [32000] });
    expect(c.layerWindows).toEqual(new Array(32).fill(262144));
    expect(c.rope).toMatchObject({ type: 'longrope', originalMaxPositionEmbeddings: 4096, factor: 32 });
    expect(c.rope.attentionFactor).toBeCloseTo(Math.sqrt(1 + Math.log(32) / Math.log(4096)), 12);
    const names = new Map(expectedWeights(c).map((w) => [w.name, w.shape]));
    expect(names.get('model.layers.0.self_attn.qkv_proj.weight')).toEqual([9216, 3072]);
    expect(names.get('model.layers.0.mlp.gate_up_proj.weight')).toEqual([16384, 3072]);
    expect(names.has('model.layers.0.self_attn.q_proj.weight')).toBe(false);
    const mini4k = parseModelConfig({ ...phi35, rope_scaling: null, max_position_embeddings: 4096, sliding_window: 2047 });
    expect(mini4k.rope.type).toBe('default');
    expect(mini4k.layerWindows).toEqual(new Array(32).fill(2047));
    // Phi3Config's default original context (4096) applies when the field is absent.
    const { original_max_position_embeddings: _, ...noOrig } = phi35;
    expect(parseModelConfig(noOrig).rope.originalMaxPositionEmbeddings).toBe(4096);
  });

  describe('configs this engine cannot run are refused naming the field and what is supported', () => {
    const cases: [string, Record<string, unknown>, string, RegExp][] = [
      ['Qwen3-MoE (num_experts)', { ...qwen3, architectures: ['Qwen3MoeForCausalLM'], model_type: 'qwen3_moe', num_experts: 128, num_experts_per_tok: 8 },
        'num_experts', /"num_experts": 128 makes this a mixture-of-experts model \(model_type "qwen3_moe"\)/],
      ['Qwen3-MoE without the expert count', { ...qwen3, model_type: 'qwen3_moe' }, 'model_type', /model_type "qwen3_moe" is a mixture-of-experts model/],
      ['Mixtral (num_local_experts)', { ...smollm2, model_type: 'mixtral', num_local_experts: 8 }, 'num_local_experts', /"num_local_experts": 8/],
      ['an expert count under a dense model_type', { ...qwen3, num_experts: 64 }, 'num_experts', /mixture-of-experts/],
      ['Gemma 3 with its vision tower', { architectures: ['Gemma3ForConditionalGeneration'], model_type: 'gemma3', text_config: { hidden_size: 2560 }, vision_config: { hidden_size: 1152 } },
        'vision_config', /Gemma 3 with a vision tower \("vision_config"\) is not supported.*gemma3_text/],
      ['Phi-3-small (block-sparse attention)', { ...smollm2, architectures: ['Phi3SmallForCausalLM'], model_type: 'phi3small', blocksparse_block_size: 64, blocksparse_num_local_blocks: 16 },
        'blocksparse_block_size', /block-sparse attention \("blocksparse_block_size"\)/],
      ['Phi-3-small by class name alone', { ...smollm2, model_type: undefined, architectures: ['Phi3SmallForCausalLM'] }, 'model_type', /model_type "phi3small"/],
      ['EmbeddingGemma (bidirectional attention)', { ...gemma3_270m, use_bidirectional_attention: true }, 'use_bidirectional_attention', /use_bidirectional_attention/],
      ['Gemma with another activation', { ...gemma3_270m, hidden_activation: 'silu' }, 'hidden_activation', /hidden_activation "silu" is not supported/],
      // Gemma 1 files that name only hidden_act "gelu": transformers runs the exact GELU there, which is not implemented.
      ['Gemma 1 with the exact GELU', { ...gemma_2b, hidden_activation: undefined }, 'hidden_act', /hidden_act "gelu" is not supported \(only "gelu_pytorch_tanh" for gemma\)/],
    ];
    test.each(cases)('%s', (_, cfg, field, message) => {
      const e = thrown(() => parseModelConfig(cfg, 'm/config.json'));
      expect(e.message).toMatch(message);
      expect(e.message).toContain('m/config.json');
      if (!['use_bidirectional_attention', 'hidden_activation', 'hidden_act'].includes(field)) {
        expect(e.message).toContain('Supported: llama (LlamaForCausalLM), mistral (MistralForCausalLM), qwen2 (Qwen2ForCausalLM), qwen3 (Qwen3ForCausalLM), phi3 (Phi3ForCausalLM), gemma (GemmaForCausalLM), gemma2 (Gemma2ForCausalLM), gemma3_text (Gemma3ForCausalLM).');
        expect(e.details).toMatchObject({ field, supported: SUPPORTED });
      }
      expect(e.details.field).toBe(field);
    });
  });

  describe('Gemma', () => {
    test('Gemma 3 (gemma-3-270m): GeGLU, (1 + w) norms, sqrt(640) in bfloat16, query_pre_attn_scalar, 5:1 sliding layers with their own RoPE base, q/k norms', () => {
      const c = parseModelConfig(gemma3_270m);
      expect(c).toMatchObject({
        arch: 'gemma3_text', headDim: 256, numKvHeads: 1, hiddenAct: 'gelu_tanh', normOffset: true, qkNorm: true, sandwichNorms: true,
        tieWordEmbeddings: true, attnSoftcap: 0, finalSoftcap: 0, ropeTheta: 1e6, ropeLocalTheta: 10000, slidingWindow: 512,
        attentionBias: false, oProjBias: false, bosTokenId: 2, eosTokenIds: [1],
      });
      // sqrt(640) = 25.2982..., stored as a bfloat16 tensor: 25.25.
      expect(c.embedScale).toBe(25.25);
      expect(c.attnScale).toBe(256 ** -0.5);
      expect(c.layerWindows).toEqual(Array.from({ length: 18 }, (_, i) => ((i + 1) % 6 ? 512 : 0)));
    });
    test('Gemma 3 as transformers v5 saves it: rope_parameters per layer type give the same bases and scaling', () => {
      const { rope_theta: _t, rope_local_base_freq: _l, rope_scaling: _s, ...v4less } = gemma3_270m;
      const v5 = { ...v4less, rope_parameters: { full_attention: { rope_type: 'linear', factor: 8, rope_theta: 1e6 }, sliding_attention: { rope_type: 'default', rope_theta: 1e4 } } };
      const c = parseModelConfig(v5);
      expect(c).toMatchObject({ ropeTheta: 1e6, ropeLocalTheta: 1e4, rope: { type: 'linear', factor: 8 } });
      expect(parseModelConfig({ ...gemma3_270m, rope_scaling: { rope_type: 'linear', factor: 8 } }).rope).toEqual(c.rope);
      // The class defaults when neither form names a base: 1e6 global, 1e4 local.
      expect(parseModelConfig(v4less)).toMatchObject({ ropeTheta: 1e6, ropeLocalTheta: 1e4 });
      const bad = { ...v5, rope_parameters: { ...v5.rope_parameters, sliding_attention: { rope_type: 'linear', factor: 2 } } };
      expect(thrown(() => parseModelConfig(bad)).details.field).toBe('rope_parameters.sliding_attention.rope_type');
    });
    test('Gemma 3 without layer_types: sliding_window_pattern (default 6) picks the global layers', () => {
      const { layer_types: _, ...noTypes } = gemma3_270m;
      expect(parseModelConfig(noTypes).layerWindows).toEqual(parseModelConfig(gemma3_270m).layerWindows);
      expect(parseModelConfig({ ...noTypes, num_hidden_layers: 4, sliding_window_pattern: 2 }).layerWindows).toEqual([512, 0, 512, 0]);
      // gemma-3-1b: sqrt(1152) = 33.94 rounds to 34 in bfloat16.
      expect(parseModelConfig({ ...noTypes, hidden_size: 1152 }).embedScale).toBe(34);
    });
    test('Gemma 2 (gemma-2-2b): softcaps 50 and 30, every other layer slides, four norms, no q/k norms, f32 normalizer', () => {
      const c = parseModelConfig(gemma2_2b);
      expect(c).toMatchObject({
        arch: 'gemma2', hiddenAct: 'gelu_tanh', normOffset: true, qkNorm: false, sandwichNorms: true, attnSoftcap: 50, finalSoftcap: 30,
        ropeLocalTheta: null, tieWordEmbeddings: true, eosTokenIds: [1, 107],
      });
      expect(c.layerWindows.slice(0, 4)).toEqual([4096, 0, 4096, 0]);
      expect(c.embedScale).toBe(Math.fround(Math.sqrt(2304)));
      // The class defaults: softcaps on when absent, off when null.
      const { attn_logit_softcapping: _a, final_logit_softcapping: _f, ...noCaps } = gemma2_2b;
      expect(parseModelConfig(noCaps)).toMatchObject({ attnSoftcap: 50, finalSoftcap: 30 });
      expect(parseModelConfig({ ...gemma2_2b, attn_logit_softcapping: null, final_logit_softcapping: null })).toMatchObject({ attnSoftcap: 0, finalSoftcap: 0 });
      expect(thrown(() => parseModelConfig({ ...gemma2_2b, final_logit_softcapping: -1 })).details.field).toBe('final_logit_softcapping');
    });
    test('Gemma (gemma-2b): GeGLU, (1 + w) norms and the scaled embedding; the Llama layer otherwise', () => {
      const c = parseModelConfig(gemma_2b);
      expect(c).toMatchObject({ arch: 'gemma', hiddenAct: 'gelu_tanh', normOffset: true, sandwichNorms: false, qkNorm: false, attnSoftcap: 0, finalSoftcap: 0, tieWordEmbeddings: true });
      expect(c.attnScale).toBe(256 ** -0.5);
      expect(c.layerWindows.every((w) => w === 0)).toBe(true);
      // By class name alone.
      const { model_type: _, ...noType } = gemma_2b;
      expect(parseModelConfig(noType).arch).toBe('gemma');
    });
    test('the other families keep neutral values', () => {
      expect(parseModelConfig(qwen3)).toMatchObject({ hiddenAct: 'silu', normOffset: false, embedScale: 1, attnScale: 1 / Math.sqrt(128), attnSoftcap: 0, finalSoftcap: 0, sandwichNorms: false, ropeLocalTheta: null });
    });
    test('roundToDtype rounds to nearest even in bfloat16 and float16', () => {
      expect(roundToDtype(Math.sqrt(640), 'bfloat16')).toBe(25.25);
      expect(roundToDtype(Math.sqrt(640), 'float16')).toBe(25.296875);
      expect(roundToDtype(Math.sqrt(640), 'float32')).toBe(Math.fround(Math.sqrt(640)));
      expect(roundToDtype(1 + 2 ** -8, 'bfloat16')).toBe(1); // a tie rounds to the even mantissa
      expect(roundToDtype(1 + 3 * 2 ** -8, 'bfloat16')).toBe(1 + 2 ** -6);
    });
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
