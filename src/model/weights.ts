// The one table of base-model tensors a ModelConfig implies: HF name, shape, role, and whether the
// loader quantizes it to NF4. The loader, the memory plan and validation all read this table, so
// there is no second list to keep in step. Names and shapes: transformers' modeling_llama.py, as
// docs/formats.md#hugging-face-model-configs lists them (nn.Linear stores [out, in]).

import { ModelFileError } from '../errors.ts';
import type { ModelConfig } from './config.ts';
import { type CheckpointModule, checkpointModules, FUSED_PARTS, type FusedModule, type LinearModule, linearModulePath, linearShape } from '../io/hf-names.ts';

export { LINEAR_MODULES, linearModulePath, linearShape, type LinearModule } from '../io/hf-names.ts';

export type WeightRole = 'embedding' | 'norm' | 'linear' | 'bias' | 'lm_head';

export interface WeightSpec {
  name: string;
  shape: number[];
  role: WeightRole;
  /** Decoder layer index, or null for embeddings / final norm / lm_head. */
  layer: number | null;
  /** For 'linear' and 'bias': which projection (Phi-3: its fused qkv_proj, gate_up_proj). */
  module: CheckpointModule | null;
  /** NF4-quantizable: the frozen linear layers only. Embeddings, norms, biases and lm_head stay
   *  16/32-bit (bitsandbytes / QLoRA leave lm_head unquantized too). */
  quantizable: boolean;
}

function hasBias(cfg: ModelConfig, module: CheckpointModule): boolean {
  if (module === 'q_proj' || module === 'k_proj' || module === 'v_proj') return cfg.attentionBias;
  if (module === 'o_proj') return cfg.oProjBias;
  return false;
}

/** Every tensor the checkpoint must hold, in load-friendly order (embeddings, layers, norm, head). */
export function expectedWeights(cfg: ModelConfig): WeightSpec[] {
  const C = cfg.hiddenSize;
  const out: WeightSpec[] = [
    { name: 'model.embed_tokens.weight', shape: [cfg.vocabSize, C], role: 'embedding', layer: null, module: null, quantizable: false },
  ];
  for (let i = 0; i < cfg.numLayers; i++) {
    out.push({ name: `model.layers.${i}.input_layernorm.weight`, shape: [C], role: 'norm', layer: i, module: null, quantizable: false });
    for (const m of checkpointModules(cfg)) {
      const path = linearModulePath(i, m);
      const shape = linearShape(cfg, m);
      out.push({ name: `${path}.weight`, shape, role: 'linear', layer: i, module: m, quantizable: true });
      if (hasBias(cfg, m)) out.push({ name: `${path}.bias`, shape: [shape[0]], role: 'bias', layer: i, module: m, quantizable: false });
      if ((m === 'k_proj' || m === 'qkv_proj') && cfg.qkNorm) {
        for (const n of ['q_norm', 'k_norm']) {
          out.push({ name: `model.layers.${i}.self_attn.${n}.weight`, shape: [cfg.headDim], role: 'norm', layer: i, module: null, quantizable: false });
        }
      }
      if (m === 'o_proj') {
        out.push({ name: `model.layers.${i}.post_attention_layernorm.weight`, shape: [C], role: 'norm', layer: i, module: null, quantizable: false });
        // Gemma 2/3: the MLP's input and output norms.
        if (cfg.sandwichNorms) {
          for (const n of ['pre_feedforward_layernorm', 'post_feedforward_layernorm']) {
            out.push({ name: `model.layers.${i}.${n}.weight`, shape: [C], role: 'norm', layer: i, module: null, quantizable: false });
          }
        }
      }
    }
  }
  out.push({ name: 'model.norm.weight', shape: [C], role: 'norm', layer: null, module: null, quantizable: false });
  if (!cfg.tieWordEmbeddings) {
    out.push({ name: 'lm_head.weight', shape: [cfg.vocabSize, C], role: 'lm_head', layer: null, module: null, quantizable: false });
  }
  return out;
}

export interface WeightProblem {
  name: string;
  kind: 'missing' | 'shape';
  expected: number[];
  found: number[] | null;
}

export interface WeightCheck {
  problems: WeightProblem[];
  /** Present in the files but not in the table (left alone by the loader; an extra lm_head.weight
   *  in a tied checkpoint is normal). */
  unexpected: string[];
}

/** Compares the table with what the files hold (name -> shape), without throwing. */
export function checkWeights(cfg: ModelConfig, found: ReadonlyMap<string, { shape: readonly number[] }>): WeightCheck {
  const problems: WeightProblem[] = [];
  const specs = expectedWeights(cfg);
  const known = new Set(specs.map((s) => s.name));
  for (const s of specs) {
    const t = found.get(s.name);
    if (!t) problems.push({ name: s.name, kind: 'missing', expected: s.shape, found: null });
    else if (t.shape.length !== s.shape.length || t.shape.some((d, i) => d !== s.shape[i])) {
      problems.push({ name: s.name, kind: 'shape', expected: s.shape, found: [...t.shape] });
    }
  }
  const unexpected = [...found.keys()].filter((n) => !known.has(n));
  return { problems, unexpected };
}

/** Throws one ModelFileError naming every missing or mis-shaped tensor (first 10 in the message,
 *  all in details.problems), with expected vs found shapes. */
export function validateWeights(cfg: ModelConfig, found: ReadonlyMap<string, { shape: readonly number[]; file?: string }>): WeightCheck {
  const check = checkWeights(cfg, found);
  if (check.problems.length === 0) return check;
  const lines = check.problems.slice(0, 10).map((p) => p.kind === 'missing'
    ? `missing tensor "${p.name}" (expected shape [${p.expected}])`
    : `tensor "${p.name}"${found.get(p.name)?.file ? ` in ${found.get(p.name)!.file}` : ''} has shape [${p.found}], expected [${p.expected}]`);
  const more = check.problems.length > 10 ? `\n... and ${check.problems.length - 10} more` : '';
  const first = check.problems[0];
  const hint = check.problems.some((p) => p.kind === 'shape')
    ? 'The weights do not match config.json: the files come from different models or revisions.'
    : 'The weights are incomplete or belong to another architecture; download the model again.';
  throw new ModelFileError(`The model weights do not match config.json:\n${lines.join('\n')}${more}`, hint, {
    tensor: first.name,
    file: found.get(first.name)?.file,
    problems: check.problems,
  });
}

/** Phi-3 under NF4: the loader quantizes each part of a fused matrix on its own, which equals
 *  quantizing the fused matrix (bitsandbytes' blocks of 64 consecutive weights) only when every part
 *  starts on a block boundary. True for every published Phi-3 shape; a config where it fails is
 *  refused rather than quantized differently from bitsandbytes. */
export function fusedSplit(cfg: ModelConfig): void {
  if (!cfg.fusedProjections) return;
  for (const [fused, parts] of Object.entries(FUSED_PARTS) as [FusedModule, readonly LinearModule[]][]) {
    let row = 0;
    for (const p of parts) {
      const [n, k] = linearShape(cfg, p);
      if ((row * k) % 64 !== 0) {
        throw new ModelFileError(`${fused}: ${p} starts at weight ${row * k} of the fused matrix, inside an NF4 block of 64.`,
          'Load this model without NF4 (--quant none), or use a Phi-3 shape whose hidden size is a multiple of 64.', { field: fused });
      }
      row += n;
    }
  }
}
