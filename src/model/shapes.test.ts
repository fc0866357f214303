import { describe, expect, test } from 'vitest';
import { parseModelConfig } from './config.ts';
import { expectedWeights } from './weights.ts';
import { SHAPES, SUGGESTED_MODELS, shapeFit } from './shapes.ts';

const desktop = { maxStorageBufferBindingSize: 2 ** 31 - 4, maxBufferSize: 2 ** 32 };

describe('named shapes and the site\'s suggestions', () => {
  test('every shape parses; phi-3.5-mini has 3.8B parameters in fused modules and LongRoPE', () => {
    for (const [name, json] of Object.entries(SHAPES)) expect(() => parseModelConfig(json, name)).not.toThrow();
    const phi = parseModelConfig(SHAPES['phi-3.5-mini']);
    const params = expectedWeights(phi).reduce((s, w) => s + w.shape.reduce((a, b) => a * b, 1), 0);
    expect(params).toBe(3_821_079_552); // Phi-3.5-mini-instruct's safetensors total
    expect(phi.rope).toMatchObject({ type: 'longrope', originalMaxPositionEmbeddings: 4096 });
  });

  test('the suggestions are the issue\'s ids; each known shape is planned, the rest say why not', () => {
    expect(SUGGESTED_MODELS.map((s) => s.shape)).toEqual(['gemma-3-270m', 'gemma-3-1b', 'qwen3-0.6b', 'qwen3-1.7b', 'phi-3.5-mini']);
    for (const s of SUGGESTED_MODELS) {
      const fit = shapeFit(s.shape, desktop, 4 * 1024 ** 3);
      if (s.shape in SHAPES) expect('peakBytes' in fit && fit.peakBytes > 0, s.shape).toBe(true);
      else expect(fit).toEqual({ shape: s.shape, unsupported: 'not supported yet' });
    }
    const q = shapeFit('qwen3-0.6b', desktop, 4 * 1024 ** 3), p = shapeFit('phi-3.5-mini', desktop, 4 * 1024 ** 3);
    if (!('peakBytes' in q) || !('peakBytes' in p)) throw new Error('planned shapes expected');
    expect(q.fits).toBe(true);
    // Phi-3.5-mini plans to about 3.8 GiB at these settings: inside 4 GiB, not inside 3 GiB.
    expect(p.peakBytes).toBeGreaterThan(q.peakBytes);
    expect(p.fits).toBe(true);
    const tight = shapeFit('phi-3.5-mini', desktop, 3 * 1024 ** 3);
    expect('fits' in tight && tight.fits).toBe(false);
    // A device whose buffers cannot hold the 32064 x 3072 embedding does not fit whatever the budget.
    const small = shapeFit('phi-3.5-mini', { maxStorageBufferBindingSize: 128 << 20, maxBufferSize: 128 << 20 }, 64 * 1024 ** 3);
    expect('fits' in small && small.fits).toBe(false);
  });
});
