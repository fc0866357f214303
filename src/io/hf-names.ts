// Module names of the Llama-family decoder in Hugging Face transformers (LlamaForCausalLM,
// MistralForCausalLM, Qwen2ForCausalLM; docs/formats.md#hugging-face-model-configs). The base-weight table (src/model/weights.ts)
// and the PEFT adapter keys (src/io/peft.ts) are both built from these, so there is one list.

export type LinearModule = 'q_proj' | 'k_proj' | 'v_proj' | 'o_proj' | 'gate_proj' | 'up_proj' | 'down_proj';
export const LINEAR_MODULES: readonly LinearModule[] = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];

/** The sizes a projection's shape depends on (a ModelConfig satisfies this). */
export interface DecoderDims {
  numLayers: number; // L
  hiddenSize: number; // C
  intermediateSize: number; // F
  numHeads: number; // H
  numKvHeads: number; // Hkv
  headDim: number; // D
}

/** `model.layers.{i}.self_attn.q_proj` etc., the name in `model.named_modules()`. */
export function linearModulePath(layer: number, module: LinearModule): string {
  const parent = module === 'gate_proj' || module === 'up_proj' || module === 'down_proj' ? 'mlp' : 'self_attn';
  return `model.layers.${layer}.${parent}.${module}`;
}

/** nn.Linear weight shape [out, in] of a projection. */
export function linearShape(dims: DecoderDims, module: LinearModule): [number, number] {
  const q = dims.numHeads * dims.headDim;
  const kv = dims.numKvHeads * dims.headDim;
  switch (module) {
    case 'q_proj': return [q, dims.hiddenSize];
    case 'k_proj':
    case 'v_proj': return [kv, dims.hiddenSize];
    case 'o_proj': return [dims.hiddenSize, q];
    case 'gate_proj':
    case 'up_proj': return [dims.intermediateSize, dims.hiddenSize];
    case 'down_proj': return [dims.hiddenSize, dims.intermediateSize];
  }
}
