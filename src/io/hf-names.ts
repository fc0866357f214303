// Module names of the Llama-family decoder in Hugging Face transformers (LlamaForCausalLM,
// MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Phi3ForCausalLM;
// docs/formats.md#hugging-face-model-configs). The base-weight table (src/model/weights.ts) and the
// PEFT adapter keys (src/io/peft.ts) are both built from these, so there is one list.

/** The seven projections the engine computes (its kernels and buffers are per projection). */
export type LinearModule = 'q_proj' | 'k_proj' | 'v_proj' | 'o_proj' | 'gate_proj' | 'up_proj' | 'down_proj';
export const LINEAR_MODULES: readonly LinearModule[] = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];

/** Phi-3's fused modules (modeling_phi3.py): qkv_proj is q, k and v stacked by output rows, and
 *  gate_up_proj is gate then up (its output is `chunk(2)`-ed in that order). */
export type FusedModule = 'qkv_proj' | 'gate_up_proj';
/** A linear layer as the checkpoint and PEFT name it: one of the seven, or a fused one. */
export type CheckpointModule = LinearModule | FusedModule;
export const FUSED_PARTS: Readonly<Record<FusedModule, readonly LinearModule[]>> = {
  qkv_proj: ['q_proj', 'k_proj', 'v_proj'],
  gate_up_proj: ['gate_proj', 'up_proj'],
};
/** Every name a LoRA target may take (`--targets`). */
export const ALL_MODULE_NAMES: readonly CheckpointModule[] = [...LINEAR_MODULES, 'qkv_proj', 'gate_up_proj'];

/** The sizes a projection's shape depends on (a ModelConfig satisfies this). */
export interface DecoderDims {
  numLayers: number; // L
  hiddenSize: number; // C
  intermediateSize: number; // F
  numHeads: number; // H
  numKvHeads: number; // Hkv
  headDim: number; // D
  /** The checkpoint stores Phi-3's fused qkv_proj and gate_up_proj instead of the separate projections. */
  fusedProjections?: boolean;
}

/** The linear layers of every decoder layer as the checkpoint names them, in load order. */
export function checkpointModules(dims: Pick<DecoderDims, 'fusedProjections'>): readonly CheckpointModule[] {
  return dims.fusedProjections ? ['qkv_proj', 'o_proj', 'gate_up_proj', 'down_proj'] : LINEAR_MODULES;
}

/** The checkpoint module a projection lives in, and its first output row there. */
export function moduleOf(dims: DecoderDims, p: LinearModule): { module: CheckpointModule; row: number } {
  if (!dims.fusedProjections) return { module: p, row: 0 };
  for (const [fused, parts] of Object.entries(FUSED_PARTS) as [FusedModule, readonly LinearModule[]][]) {
    const i = parts.indexOf(p);
    if (i < 0) continue;
    let row = 0;
    for (const q of parts.slice(0, i)) row += linearShape(dims, q)[0];
    return { module: fused, row };
  }
  return { module: p, row: 0 };
}

/** The modules of this model a list of target names selects. On a fused model a separate name
 *  selects the fused module holding it (q_proj, k_proj, v_proj: qkv_proj), and on a model with
 *  separate projections a fused name selects its parts, so one recipe fits every family. */
export function selectModules(dims: Pick<DecoderDims, 'fusedProjections'>, targets: readonly CheckpointModule[]): CheckpointModule[] {
  const want = new Set<CheckpointModule>();
  for (const t of targets) {
    if (dims.fusedProjections) want.add(t === 'q_proj' || t === 'k_proj' || t === 'v_proj' ? 'qkv_proj' : t === 'gate_proj' || t === 'up_proj' ? 'gate_up_proj' : t);
    else if (t === 'qkv_proj' || t === 'gate_up_proj') for (const q of FUSED_PARTS[t]) want.add(q);
    else want.add(t);
  }
  return checkpointModules(dims).filter((m) => want.has(m));
}

/** `model.layers.{i}.self_attn.q_proj` etc., the name in `model.named_modules()`. */
export function linearModulePath(layer: number, module: CheckpointModule): string {
  const parent = module === 'gate_proj' || module === 'up_proj' || module === 'down_proj' || module === 'gate_up_proj' ? 'mlp' : 'self_attn';
  return `model.layers.${layer}.${parent}.${module}`;
}

/** nn.Linear weight shape [out, in] of a projection. */
export function linearShape(dims: DecoderDims, module: CheckpointModule): [number, number] {
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
    case 'qkv_proj': return [q + 2 * kv, dims.hiddenSize];
    case 'gate_up_proj': return [2 * dims.intermediateSize, dims.hiddenSize];
  }
}
