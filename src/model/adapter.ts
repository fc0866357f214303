// PEFT adapter files ↔ the GPU LoRA state. Writing reads the weights back once; reading checks the
// files against the model (io/peft.ts) and turns the config into the trainer's LoraSpec.
import { AdapterFileError } from '../errors.ts';
import { encodeAdapter, loraConfig, readAdapter, type LoraConfig } from '../io/peft.ts';
import type { ByteSource } from '../io/byte-source.ts';
import { checkpointModules, selectModules, type DecoderDims } from '../io/hf-names.ts';
import type { LoraModule, LoraSpec, LoraState } from './lora.ts';
import { checkFiniteAdapter } from './finite.ts';

/** target_modules are the model's own module names (Phi-3: qkv_proj, gate_up_proj), as PEFT writes them. */
export function loraConfigOf(dims: Pick<DecoderDims, 'fusedProjections'>, spec: LoraSpec, baseModel: string | null = null): LoraConfig {
  return loraConfig({
    r: spec.rank,
    loraAlpha: spec.alpha,
    loraDropout: spec.dropout,
    targetModules: selectModules(dims, spec.targets),
    useRslora: spec.rslora,
    baseModelNameOrPath: baseModel,
  });
}

/** adapter_config.json and adapter_model.safetensors for the current weights. */
export async function exportAdapter(lora: LoraState, baseModel: string | null = null): Promise<Record<string, Uint8Array>> {
  return encodeAdapter(lora.dims, loraConfigOf(lora.dims, lora.spec, baseModel), await lora.tensors());
}

export interface ImportedAdapter {
  spec: LoraSpec;
  weights: Map<string, Float32Array>;
  config: LoraConfig;
}

/** Reads a PEFT adapter and checks it fits the model. Our LoRA state puts a module's adapter on every
 *  layer, so adapters limited to some layers are refused with the reason. */
export async function importAdapter(dims: DecoderDims, config: ByteSource | string, weights: ByteSource): Promise<ImportedAdapter> {
  const a = await readAdapter(dims, config, weights);
  for (const [key, w] of a.weights) checkFiniteAdapter(w, key, weights.name);
  const modules = new Map<LoraModule, Set<number>>();
  for (const s of a.specs) {
    const m = s.module;
    if (!modules.has(m)) modules.set(m, new Set());
    modules.get(m)!.add(s.layer);
  }
  for (const [m, layers] of modules) {
    if (layers.size !== dims.numLayers) {
      throw new AdapterFileError(
        `${weights.name}: the adapter puts ${m} on ${layers.size} of ${dims.numLayers} layers.`,
        'Adapters restricted to some layers (layers_to_transform) are not supported yet; train one on all layers.',
        { file: weights.name, module: m },
      );
    }
  }
  const spec: LoraSpec = {
    rank: a.config.r, alpha: a.config.loraAlpha, dropout: a.config.loraDropout, rslora: a.config.useRslora,
    targets: checkpointModules(dims).filter((p) => modules.has(p)),
  };
  return { spec, weights: a.weights, config: a.config };
}
