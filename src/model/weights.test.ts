import { describe, expect, test } from 'vitest';
import { ModelFileError } from '../errors.ts';
import { parseModelConfig } from './config.ts';
import { checkWeights, expectedWeights, validateWeights } from './weights.ts';

const tiny = (extra: Record<string, unknown> = {}) => parseModelConfig({
  model_type: 'llama', vocab_size: 32, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 2, ...extra,
});

function shapes(cfg: ReturnType<typeof tiny>) {
  return new Map(expectedWeights(cfg).map((w) => [w.name, { shape: w.shape, file: 'model.safetensors' }]));
}

describe('expectedWeights', () => {
  test('llama, untied, GQA: names, shapes and which tensors are NF4-quantizable', () => {
    const w = expectedWeights(tiny());
    const byName = new Map(w.map((s) => [s.name, s]));
    expect(w.length).toBe(1 + 2 * 9 + 1 + 1);
    expect(byName.get('model.embed_tokens.weight')).toMatchObject({ shape: [32, 16], quantizable: false, role: 'embedding' });
    expect(byName.get('model.layers.1.self_attn.q_proj.weight')).toMatchObject({ shape: [16, 16], quantizable: true, layer: 1, module: 'q_proj' });
    expect(byName.get('model.layers.1.self_attn.k_proj.weight')!.shape).toEqual([8, 16]); // Hkv * D = 2 * 4
    expect(byName.get('model.layers.0.self_attn.v_proj.weight')!.shape).toEqual([8, 16]);
    expect(byName.get('model.layers.0.self_attn.o_proj.weight')!.shape).toEqual([16, 16]);
    expect(byName.get('model.layers.0.mlp.gate_proj.weight')!.shape).toEqual([24, 16]);
    expect(byName.get('model.layers.0.mlp.up_proj.weight')!.shape).toEqual([24, 16]);
    expect(byName.get('model.layers.0.mlp.down_proj.weight')!.shape).toEqual([16, 24]);
    expect(byName.get('model.layers.0.input_layernorm.weight')).toMatchObject({ shape: [16], quantizable: false });
    expect(byName.get('model.layers.0.post_attention_layernorm.weight')!.shape).toEqual([16]);
    expect(byName.get('model.norm.weight')!.shape).toEqual([16]);
    expect(byName.get('lm_head.weight')).toMatchObject({ shape: [32, 16], quantizable: false, role: 'lm_head' });
    expect(w.filter((s) => s.quantizable).length).toBe(14);
    expect(w.some((s) => s.name.endsWith('.bias'))).toBe(false);
  });

  test('qwen3: q_norm and k_norm of head_dim per layer, not quantized; a missing one is named', () => {
    const cfg = tiny({ model_type: 'qwen3', head_dim: 6 });
    const w = expectedWeights(cfg);
    expect(w.length).toBe(1 + 2 * 11 + 1 + 1);
    for (const l of [0, 1]) {
      for (const n of ['q_norm', 'k_norm']) {
        expect(w.find((s) => s.name === `model.layers.${l}.self_attn.${n}.weight`)).toMatchObject({ shape: [6], role: 'norm', quantizable: false, layer: l });
      }
    }
    expect(w.find((s) => s.name === 'model.layers.0.self_attn.q_proj.weight')!.shape).toEqual([24, 16]); // H * head_dim
    const found = shapes(cfg);
    found.delete('model.layers.1.self_attn.k_norm.weight');
    expect(checkWeights(cfg, found).problems).toEqual([{ name: 'model.layers.1.self_attn.k_norm.weight', kind: 'missing', expected: [6], found: null }]);
    expect(expectedWeights(tiny()).some((s) => s.name.includes('_norm.weight') && s.name.includes('self_attn'))).toBe(false);
  });

  test('tied embeddings drop lm_head; explicit head_dim changes q/k/v/o', () => {
    const w = expectedWeights(tiny({ tie_word_embeddings: true, head_dim: 8 }));
    expect(w.some((s) => s.name === 'lm_head.weight')).toBe(false);
    const q = w.find((s) => s.name === 'model.layers.0.self_attn.q_proj.weight')!;
    const o = w.find((s) => s.name === 'model.layers.0.self_attn.o_proj.weight')!;
    expect(q.shape).toEqual([32, 16]); // H * D = 4 * 8, not C
    expect(o.shape).toEqual([16, 32]);
  });

  test('qwen2 adds q/k/v biases (not o_proj), unquantized', () => {
    const w = expectedWeights(tiny({ model_type: 'qwen2' }));
    const biases = w.filter((s) => s.layer === 0 && s.role === 'bias');
    expect(biases.map((b) => [b.name, b.shape])).toEqual([
      ['model.layers.0.self_attn.q_proj.bias', [16]],
      ['model.layers.0.self_attn.k_proj.bias', [8]],
      ['model.layers.0.self_attn.v_proj.bias', [8]],
    ]);
    expect(biases.every((b) => !b.quantizable)).toBe(true);
  });
});

describe('validateWeights', () => {
  test('a complete set passes; extras are reported as unexpected, not errors', () => {
    const cfg = tiny({ tie_word_embeddings: true });
    const found = shapes(cfg);
    found.set('lm_head.weight', { shape: [32, 16], file: 'model.safetensors' });
    expect(validateWeights(cfg, found).unexpected).toEqual(['lm_head.weight']);
  });

  test('a mis-shaped tensor is named with expected and found shapes and its file', () => {
    const cfg = tiny();
    const found = shapes(cfg);
    found.set('model.layers.1.self_attn.k_proj.weight', { shape: [16, 16], file: 'model-00002-of-00002.safetensors' });
    let err: unknown;
    try { validateWeights(cfg, found); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(ModelFileError);
    const e = err as ModelFileError;
    expect(e.message).toContain('tensor "model.layers.1.self_attn.k_proj.weight" in model-00002-of-00002.safetensors has shape [16,16], expected [8,16]');
    expect(e.details).toMatchObject({ tensor: 'model.layers.1.self_attn.k_proj.weight', file: 'model-00002-of-00002.safetensors' });
  });

  test('missing tensors (qwen2 biases absent from a llama-style checkpoint) are listed', () => {
    const cfg = tiny({ model_type: 'qwen2' });
    const found = shapes(tiny());
    const check = checkWeights(cfg, found);
    expect(check.problems.map((p) => p.name)).toContain('model.layers.0.self_attn.q_proj.bias');
    expect(check.problems.every((p) => p.kind === 'missing')).toBe(true);
    expect(() => validateWeights(cfg, found)).toThrow(/missing tensor "model.layers.0.self_attn.q_proj.bias" \(expected shape \[16\]\)/);
  });
});
