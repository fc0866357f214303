// Phi-3's fused modules end to end on the CPU side: the LoRA table, the adapter files (PEFT's module
// names and shapes, as the PyTorch reference in scripts/tiny_models.py names them) and the refusals.
import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { bytesSource } from '../io/byte-source.ts';
import { SafetensorsFile } from '../io/safetensors.ts';
import { encodeAdapter } from '../io/peft.ts';
import { moduleOf, selectModules } from '../io/hf-names.ts';
import { loadGolden } from '../testing/compare.ts';
import { ModelFileError, UsageError } from '../errors.ts';
import { parseModelConfig } from './config.ts';
import { importAdapter, loraConfigOf } from './adapter.ts';
import { DEFAULT_LORA, loraTable, parseTargets, PROJS, type LoraSpec } from './lora.ts';
import { fusedSplit } from './weights.ts';
import { GGUF_ARCH, ggufTensorName, permuteHeads } from '../export/gguf-lora.ts';

const tiny = parseModelConfig(JSON.parse(readFileSync(new URL('../../fixtures/models/tiny-phi3/config.json', import.meta.url), 'utf8')));
const golden = loadGolden('model_tiny-phi3') as unknown as Record<string, any>;
const spec: LoraSpec = { rank: golden.config.r, alpha: golden.config.alpha, dropout: 0, rslora: false, targets: [...PROJS] };

describe('Phi-3 LoRA on the fused modules', () => {
  test('all-linear adapts qkv_proj, o_proj, gate_up_proj and down_proj with the reference\'s PEFT keys and shapes', () => {
    const { entries } = loraTable(tiny, spec);
    const want = golden.init_adapter as Record<string, { shape: number[] }>;
    expect(entries.map((e) => e.key).sort()).toEqual(Object.keys(want).sort());
    for (const e of entries) expect(e.shape, e.key).toEqual(want[e.key].shape);
    expect(want['base_model.model.model.layers.0.self_attn.qkv_proj.lora_B.weight'].shape).toEqual([(4 + 2 * 2) * 16, spec.rank]);
  });

  test('separate names select the fused module holding them; q, k, v are its row slices in order', () => {
    expect(selectModules(tiny, DEFAULT_LORA.targets)).toEqual(['qkv_proj']);
    expect(selectModules(tiny, parseTargets('up_proj,o_proj'))).toEqual(['o_proj', 'gate_up_proj']);
    expect(selectModules({ fusedProjections: false }, parseTargets('qkv_proj'))).toEqual(['q_proj', 'k_proj', 'v_proj']);
    expect([moduleOf(tiny, 'q_proj'), moduleOf(tiny, 'k_proj'), moduleOf(tiny, 'v_proj')]).toEqual([
      { module: 'qkv_proj', row: 0 }, { module: 'qkv_proj', row: 64 }, { module: 'qkv_proj', row: 96 }]);
    expect(moduleOf(tiny, 'up_proj')).toEqual({ module: 'gate_up_proj', row: tiny.intermediateSize });
  });

  test('the saved adapter names PEFT\'s modules (target_modules and tensor keys) and reads back', async () => {
    const weights = new Map(Object.entries(golden.nf4.adapter as Record<string, { data: number[] }>).map(([k, v]) => [k, Float32Array.from(v.data)]));
    const cfg = loraConfigOf(tiny, spec, 'tiny-phi3');
    expect(cfg.targetModules).toEqual(['qkv_proj', 'o_proj', 'gate_up_proj', 'down_proj']);
    const files = encodeAdapter(tiny, cfg, weights);
    const json = JSON.parse(new TextDecoder().decode(files['adapter_config.json']));
    expect(json.target_modules).toEqual(['qkv_proj', 'o_proj', 'gate_up_proj', 'down_proj']);
    const st = await SafetensorsFile.open(bytesSource('adapter_model.safetensors', files['adapter_model.safetensors']));
    expect(st.tensors.map((t) => t.name).sort()).toEqual([...weights.keys()].sort());
    const back = await importAdapter(tiny, bytesSource('adapter_config.json', files['adapter_config.json']), bytesSource('adapter_model.safetensors', files['adapter_model.safetensors']));
    expect(back.spec.targets).toEqual(['qkv_proj', 'o_proj', 'gate_up_proj', 'down_proj']);
    for (const [k, v] of weights) expect(back.weights.get(k)).toEqual(v);
  });

  test('a rank that would bind a slice of B off the 256-byte alignment is refused, naming the module', () => {
    // k's rows of qkv_proj.lora_B start at float 64 * r, v's at 96 * r: r = 1 puts v at 96.
    expect(() => loraTable(tiny, { ...spec, rank: 1 })).toThrow(UsageError);
    expect(() => loraTable(tiny, { ...spec, rank: 1 })).toThrow(/v_proj's rows of qkv_proj.lora_B at float 96/);
    expect(() => loraTable(tiny, { ...spec, rank: 2 })).not.toThrow();
  });

  test('NF4 refuses a fused matrix whose parts would not start on a block of 64 weights', () => {
    expect(() => fusedSplit(tiny)).not.toThrow();
    // hidden 40, 4 heads of 10, 2 kv heads: k starts at weight 40 * 40 = 1600 (block 25), v at 60 * 40 = 2400, inside block 37.
    const odd = { ...tiny, hiddenSize: 40, headDim: 10 };
    expect(() => fusedSplit(odd)).toThrow(ModelFileError);
    expect(() => fusedSplit(odd)).toThrow(/qkv_proj: v_proj starts at weight 2400/);
  });

  test('GGUF-LoRA names follow llama.cpp\'s phi3 tensors (attn_qkv, ffn_up holding gate and up), unpermuted', () => {
    expect(GGUF_ARCH.phi3).toBe('phi3');
    expect(ggufTensorName(3, 'qkv_proj', 'A')).toBe('blk.3.attn_qkv.weight.lora_a');
    expect(ggufTensorName(3, 'gate_up_proj', 'B')).toBe('blk.3.ffn_up.weight.lora_b');
    expect(permuteHeads(tiny, 'qkv_proj')).toBeNull();
  });
});
