// Named model shapes: the config.json of models people fine-tune, without their weights. `webtune
// bench --shape NAME` builds a random model of one; the site's fit meter plans a training run of
// each against the device (src/app/fit.ts).
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
};
