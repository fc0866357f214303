// A PEFT LoRA adapter as a GGUF LoRA adapter, the file llama.cpp's `--lora` and `llama-export-lora`
// load; the same file convert_lora_to_gguf.py (llama.cpp) makes from a PEFT folder:
//   - general.architecture of the base as llama.cpp names it (convert_hf_to_gguf.py registers
//     LlamaForCausalLM and MistralForCausalLM under LlamaModel -> "llama"; Qwen2ForCausalLM -> "qwen2"),
//     general.type = "adapter", adapter.type = "lora", adapter.lora.alpha (f32);
//   - per adapted projection `blk.N.<name>.weight.lora_a` with ne [in, r] and `.lora_b` with ne [r, out]
//     (the torch shapes (r, in) and (out, r) reversed; the row-major bytes are the same);
//   - for the "llama" architecture, the rows of q_proj's and k_proj's lora_b permuted exactly as
//     LlamaModel.modify_tensors permutes the base q/k weights (heads' rotary halves interleaved), so
//     B·A lines up with the permuted base weight. lora_a is untouched: it acts on the input side.
// llama.cpp scales by alpha / rank (llama-adapter.cpp); rsLoRA's alpha / sqrt(r) is carried by writing
// alpha·sqrt(r) as the alpha, which llama.cpp then turns into the same scale.
import { AdapterFileError } from '../errors.ts';
import type { Arch, ModelConfig } from '../model/config.ts';
import type { CheckpointModule } from '../io/hf-names.ts';
import { type AdapterTensorSpec, type LoraConfig } from '../io/peft.ts';
import { peftScaling } from '../model/lora.ts';
import { encode16, littleEndianBytes } from './float16.ts';
import { type GgufTensor, type GgufValue, writeGguf } from './gguf.ts';

/** gguf-py tensor_mapping.py: the HF projection -> llama.cpp's tensor name inside a block. */
export const LLAMA_CPP_TENSOR: Readonly<Record<CheckpointModule, string>> = {
  q_proj: 'attn_q', k_proj: 'attn_k', v_proj: 'attn_v', qkv_proj: 'attn_qkv', o_proj: 'attn_output',
  gate_proj: 'ffn_gate', up_proj: 'ffn_up', gate_up_proj: 'ffn_up', down_proj: 'ffn_down',
};

/** general.architecture llama.cpp uses for each base we support. */
export const GGUF_ARCH: Readonly<Record<Arch, string>> = {
  llama: 'llama', mistral: 'llama', qwen2: 'qwen2', qwen3: 'qwen3', phi3: 'phi3', gemma: 'gemma', gemma2: 'gemma2', gemma3_text: 'gemma3',
};

/** gguf-py LlamaFileType: ALL_F32 = 0, MOSTLY_F16 = 1; GGML_QUANT_VERSION = 2. */
const FILE_TYPE = { F32: 0, F16: 1 } as const;
const QUANT_VERSION = 2;

export function ggufTensorName(layer: number, module: CheckpointModule, which: 'A' | 'B'): string {
  return `blk.${layer}.${LLAMA_CPP_TENSOR[module]}.weight.lora_${which === 'A' ? 'a' : 'b'}`;
}

/** Heads whose rotary halves llama.cpp interleaves for this projection (LlamaModel.permute's n_head,
 *  which is the kv head count for k_proj), or null when the rows keep their order. */
export function permuteHeads(config: Pick<ModelConfig, 'arch' | 'numHeads' | 'numKvHeads'>, module: CheckpointModule): number | null {
  if (GGUF_ARCH[config.arch] !== 'llama') return null;
  if (module === 'q_proj') return config.numHeads;
  if (module === 'k_proj') return config.numKvHeads;
  return null;
}

/** Rows of a (rows, cols) row-major matrix reordered as reshape(nHead, 2, rows/nHead/2, cols)
 *  .swapaxes(1, 2).reshape(rows, cols): within each head, row 2i + j comes from row j·half + i. */
export function permuteRows(m: Float32Array, rows: number, cols: number, nHead: number, inverse = false): Float32Array {
  const hd = rows / nHead, half = hd / 2;
  if (!Number.isInteger(half)) throw new AdapterFileError(`Cannot permute ${rows} rows over ${nHead} heads for llama.cpp: the head size is not even.`, 'The model shape is not a Llama one.', {});
  const out = new Float32Array(m.length);
  for (let h = 0; h < nHead; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const dst = h * hd + 2 * i + j, src = h * hd + j * half + i;
        const [to, from] = inverse ? [src, dst] : [dst, src];
        out.set(m.subarray(from * cols, (from + 1) * cols), to * cols);
      }
    }
  }
  return out;
}

export interface GgufLoraOptions {
  type?: 'F32' | 'F16';
  /** general.name (e.g. the adapter folder's name). */
  name?: string;
}

/** The alpha to write so that llama.cpp's alpha / r equals PEFT's scaling for this config. */
export function ggufAlpha(cfg: Pick<LoraConfig, 'r' | 'loraAlpha' | 'useRslora'>): number {
  return peftScaling(cfg) * cfg.r;
}

/** The GGUF file for an adapter already checked against `config` (io/peft.ts readAdapter). */
export function adapterToGguf(config: ModelConfig, lora: LoraConfig, specs: readonly AdapterTensorSpec[], weights: ReadonlyMap<string, Float32Array>, opts: GgufLoraOptions = {}): Uint8Array {
  const type = opts.type ?? 'F32';
  const kv: [string, GgufValue][] = [
    ['general.architecture', { type: 'string', value: GGUF_ARCH[config.arch] }],
    ['general.type', { type: 'string', value: 'adapter' }],
    ...(opts.name ? [['general.name', { type: 'string', value: opts.name }] as [string, GgufValue]] : []),
    ['general.file_type', { type: 'u32', value: FILE_TYPE[type] }],
    ['general.quantization_version', { type: 'u32', value: QUANT_VERSION }],
    ['adapter.type', { type: 'string', value: 'lora' }],
    ['adapter.lora.alpha', { type: 'f32', value: ggufAlpha(lora) }],
  ];
  const ordered = [...specs].sort((a, b) => a.layer - b.layer || LINEAR_ORDER.indexOf(a.module) - LINEAR_ORDER.indexOf(b.module) || a.which.localeCompare(b.which));
  const tensors: GgufTensor[] = ordered.map((s) => {
    let data = weights.get(s.key);
    if (!data) throw new AdapterFileError(`No data for "${s.key}".`, 'This is a bug in the GGUF export.', { tensor: s.key });
    const heads = s.which === 'B' ? permuteHeads(config, s.module) : null;
    if (heads !== null) data = permuteRows(data, s.shape[0], s.shape[1], heads);
    return {
      name: ggufTensorName(s.layer, s.module, s.which),
      ne: [s.shape[1], s.shape[0]],
      type,
      data: type === 'F32' ? littleEndianBytes(data) : encode16(data, 'F16'),
    };
  });
  return writeGguf(kv, tensors);
}

const LINEAR_ORDER: readonly CheckpointModule[] = Object.keys(LLAMA_CPP_TENSOR) as CheckpointModule[];
