// Named model shapes: the config.json of models people fine-tune on their own machines, without their
// weights. `webtune bench --shape NAME` builds a random model of one; the site's fit meter plans a
// training run of each against the device (src/app/fit.ts) before anything is downloaded.
/** config.json of the named shapes (values from the models' Hub configs). */
export const SHAPES: Record<string, Record<string, unknown>> = {
  'smollm2-135m': {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: 49152, hidden_size: 576, intermediate_size: 1536,
    num_hidden_layers: 30, num_attention_heads: 9, num_key_value_heads: 3, head_dim: 64, rms_norm_eps: 1e-5,
    rope_theta: 100000, max_position_embeddings: 8192, tie_word_embeddings: true, bos_token_id: 0, eos_token_id: 0,
  },
  'qwen2.5-0.5b': {
    architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', vocab_size: 151936, hidden_size: 896, intermediate_size: 4864,
    num_hidden_layers: 24, num_attention_heads: 14, num_key_value_heads: 2, rms_norm_eps: 1e-6, rope_theta: 1000000,
    max_position_embeddings: 32768, tie_word_embeddings: true, bos_token_id: 151643, eos_token_id: 151643,
  },
  // Qwen3: per-head q/k norms, head_dim 128 (not hidden / heads = 64 for the 0.6B), tied head.
  'qwen3-0.6b': {
    architectures: ['Qwen3ForCausalLM'], model_type: 'qwen3', vocab_size: 151936, hidden_size: 1024, intermediate_size: 3072,
    num_hidden_layers: 28, num_attention_heads: 16, num_key_value_heads: 8, head_dim: 128, rms_norm_eps: 1e-6, rope_theta: 1000000,
    max_position_embeddings: 40960, tie_word_embeddings: true, attention_bias: false, bos_token_id: 151643, eos_token_id: 151645,
  },
  'qwen3-1.7b': {
    architectures: ['Qwen3ForCausalLM'], model_type: 'qwen3', vocab_size: 151936, hidden_size: 2048, intermediate_size: 6144,
    num_hidden_layers: 28, num_attention_heads: 16, num_key_value_heads: 8, head_dim: 128, rms_norm_eps: 1e-6, rope_theta: 1000000,
    max_position_embeddings: 40960, tie_word_embeddings: true, attention_bias: false, bos_token_id: 151643, eos_token_id: 151645,
  },
  // Gemma 3 (text): GeGLU, head_dim 256, MQA, query_pre_attn_scalar 256, sliding window 512 in five of
  // every six layers (rope_local_base_freq 10000 there, rope_theta 1e6 in the global ones), q/k norms,
  // four norms per layer, a tied 262144-row embedding scaled by sqrt(hidden_size).
  'gemma-3-270m': {
    architectures: ['Gemma3ForCausalLM'], model_type: 'gemma3_text', vocab_size: 262144, hidden_size: 640, intermediate_size: 2048,
    num_hidden_layers: 18, num_attention_heads: 4, num_key_value_heads: 1, head_dim: 256, rms_norm_eps: 1e-6, rope_theta: 1000000,
    rope_local_base_freq: 10000, query_pre_attn_scalar: 256, sliding_window: 512, sliding_window_pattern: 6,
    max_position_embeddings: 32768, tie_word_embeddings: true, hidden_activation: 'gelu_pytorch_tanh', attention_bias: false,
    attn_logit_softcapping: null, final_logit_softcapping: null, rope_scaling: null, torch_dtype: 'bfloat16', bos_token_id: 2, eos_token_id: 1,
  },
  'gemma-3-1b': {
    architectures: ['Gemma3ForCausalLM'], model_type: 'gemma3_text', vocab_size: 262144, hidden_size: 1152, intermediate_size: 6912,
    num_hidden_layers: 26, num_attention_heads: 4, num_key_value_heads: 1, head_dim: 256, rms_norm_eps: 1e-6, rope_theta: 1000000,
    rope_local_base_freq: 10000, query_pre_attn_scalar: 256, sliding_window: 512, sliding_window_pattern: 6,
    max_position_embeddings: 32768, tie_word_embeddings: true, hidden_activation: 'gelu_pytorch_tanh', attention_bias: false,
    attn_logit_softcapping: null, final_logit_softcapping: null, rope_scaling: null, torch_dtype: 'bfloat16', bos_token_id: 2, eos_token_id: [1, 106],
  },
  'llama-3.2-1b': {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: 128256, hidden_size: 2048, intermediate_size: 8192,
    num_hidden_layers: 16, num_attention_heads: 32, num_key_value_heads: 8, head_dim: 64, rms_norm_eps: 1e-5,
    rope_theta: 500000, max_position_embeddings: 131072, tie_word_embeddings: true, bos_token_id: 128000, eos_token_id: 128001,
    rope_scaling: { rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
  },
  'llama-3.2-3b': {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: 128256, hidden_size: 3072, intermediate_size: 8192,
    num_hidden_layers: 28, num_attention_heads: 24, num_key_value_heads: 8, head_dim: 128, rms_norm_eps: 1e-5,
    rope_theta: 500000, max_position_embeddings: 131072, tie_word_embeddings: true, bos_token_id: 128000, eos_token_id: 128001,
    rope_scaling: { rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
  },
  // The seed's model (meta-llama/Meta-Llama-3-8B): no rope_scaling, an untied head.
  'llama-3-8b': {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: 128256, hidden_size: 4096, intermediate_size: 14336,
    num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 8, rms_norm_eps: 1e-5,
    rope_theta: 500000, max_position_embeddings: 8192, tie_word_embeddings: false, bos_token_id: 128000, eos_token_id: 128001,
  },
  // Phi-3.5-mini: fused qkv_proj / gate_up_proj, LongRoPE from 4096 to 131072 positions, MHA, untied.
  'phi-3.5-mini': {
    architectures: ['Phi3ForCausalLM'], model_type: 'phi3', vocab_size: 32064, hidden_size: 3072, intermediate_size: 8192,
    num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 32, rms_norm_eps: 1e-5, rope_theta: 10000,
    max_position_embeddings: 131072, original_max_position_embeddings: 4096, sliding_window: 262144, tie_word_embeddings: false,
    bos_token_id: 1, eos_token_id: 32000, pad_token_id: 32000, hidden_act: 'silu',
    rope_scaling: {
      type: 'longrope',
      long_factor: [1.0800000429153442, 1.1100000143051147, 1.1399999856948853, 1.340000033378601, 1.5899999141693115, 1.600000023841858, 1.6200000047683716, 2.620000123977661, 3.2300000190734863, 3.2300000190734863, 4.789999961853027, 7.400000095367432, 7.700000286102295, 9.09000015258789, 12.199999809265137, 17.670000076293945, 24.46000099182129, 28.57000160217285, 30.420001983642578, 30.840002059936523, 32.590003967285156, 32.93000411987305, 42.320003509521484, 44.96000289916992, 50.340003967285156, 50.45000457763672, 57.55000305175781, 57.93000411987305, 58.21000289916992, 60.1400032043457, 62.61000442504883, 62.62000274658203, 62.71000289916992, 63.1400032043457, 63.1400032043457, 63.77000427246094, 63.93000411987305, 63.96000289916992, 63.970001220703125, 64.02999877929688, 64.06999969482422, 64.08000183105469, 64.12000274658203, 64.41000366210938, 64.4800033569336, 64.51000213623047, 64.52999877929688, 64.83999633789062],
      short_factor: [1.0, 1.0199999809265137, 1.0299999713897705, 1.0299999713897705, 1.0499999523162842, 1.0499999523162842, 1.0499999523162842, 1.0499999523162842, 1.0499999523162842, 1.0699999332427979, 1.0999999046325684, 1.1099998950958252, 1.1599998474121094, 1.1599998474121094, 1.1699998378753662, 1.2899998426437378, 1.339999794960022, 1.679999828338623, 1.7899998426437378, 1.8199998140335083, 1.8499997854232788, 1.8799997568130493, 1.9099997282028198, 1.9399996995925903, 1.9899996519088745, 2.0199997425079346, 2.0199997425079346, 2.0199997425079346, 2.0199997425079346, 2.0199997425079346, 2.0199997425079346, 2.0299997329711914, 2.0299997329711914, 2.0299997329711914, 2.0299997329711914, 2.0299997329711914, 2.0299997329711914, 2.0299997329711914, 2.0299997329711914, 2.0299997329711914, 2.0799996852874756, 2.0899996757507324, 2.189999580383301, 2.2199995517730713, 2.5899994373321533, 2.729999542236328, 2.749999523162842, 2.8399994373321533],
    },
  },
};

/** The Hub ids the site suggests, with the shape each one has. */
export const SUGGESTED_MODELS: readonly { id: string; shape: string }[] = [
  { id: 'google/gemma-3-270m', shape: 'gemma-3-270m' },
  { id: 'google/gemma-3-1b-it', shape: 'gemma-3-1b' },
  { id: 'Qwen/Qwen3-0.6B', shape: 'qwen3-0.6b' },
  { id: 'Qwen/Qwen3-1.7B', shape: 'qwen3-1.7b' },
  { id: 'microsoft/Phi-3.5-mini-instruct', shape: 'phi-3.5-mini' },
];
