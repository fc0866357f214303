import { describe, expect, test } from 'vitest';
import { parseModelConfig } from './config.ts';
import { expectedWeights } from './weights.ts';
import { SHAPES, SUGGESTED_MODELS } from './shapes.ts';

describe('named shapes and the site\'s suggestions', () => {
  test('every shape parses; phi-3.5-mini has 3.8B parameters in fused modules and LongRoPE', () => {
    for (const [name, json] of Object.entries(SHAPES)) expect(() => parseModelConfig(json, name)).not.toThrow();
    const phi = parseModelConfig(SHAPES['phi-3.5-mini']);
    const params = expectedWeights(phi).reduce((s, w) => s + w.shape.reduce((a, b) => a * b, 1), 0);
    expect(params).toBe(3_821_079_552); // Phi-3.5-mini-instruct's safetensors total
    expect(phi.rope).toMatchObject({ type: 'longrope', originalMaxPositionEmbeddings: 4096 });
  });

  test('the suggestions are the issue\'s ids, each a named shape the fit meter plans', () => {
    expect(SUGGESTED_MODELS.map((s) => s.shape)).toEqual(['gemma-3-270m', 'gemma-3-1b', 'qwen3-0.6b', 'qwen3-1.7b', 'phi-3.5-mini']);
    for (const s of SUGGESTED_MODELS) expect(Object.keys(SHAPES), s.id).toContain(s.shape);
  });
});
