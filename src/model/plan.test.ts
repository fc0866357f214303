import { describe, expect, test } from 'vitest';
import { Plan, type ModelDims, type PlanOptions } from './plan.ts';

const dims: ModelDims = {
  vocabSize: 256, hiddenSize: 64, intermediateSize: 96, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 16,
  rmsNormEps: 1e-5, tieWordEmbeddings: true, attentionBias: false,
};
const base: PlanOptions = {
  batch: 1, seqLen: 16, quant: 'none', training: false, checkpointing: false, maxPositions: 40,
  limits: { maxStorageBufferBindingSize: 1 << 27, maxBufferSize: 1 << 28 },
};
const names = (p: Plan) => p.rows.map((r) => r.name);

describe('memory plan', () => {
  test('kvCache adds a K and a V cache per layer of maxPositions rows, counted as kv-cache', () => {
    const p = new Plan(dims, { ...base, kvCache: true });
    const bytes = 40 * 2 * 16 * 4; // maxPositions x Hkv x D f32
    for (let l = 0; l < 2; l++) {
      for (const kv of ['k', 'v']) expect(p.row(`kv.${l}.${kv}`)).toMatchObject({ category: 'kv-cache', bytes, phase: 'run' });
    }
    expect(p.byCategory()['kv-cache']).toBe(4 * bytes);
    expect(p.row('last.x').bytes).toBe(64 * 4);
    // Everything else is the plain inference plan.
    const plain = new Plan(dims, base);
    expect(names(plain).some((n) => /^(kv|last|sample)\./.test(n))).toBe(false);
    // Plus two ping-pong buffers for selecting the best logits on the GPU: 256 (value, id) pairs
    // per 2048 logits, and at least one such group.
    for (const s of ['sample.a', 'sample.b']) expect(p.row(s)).toMatchObject({ category: 'scratch', bytes: 256 * 8, phase: 'run' });
    expect(p.peakBytes() - plain.peakBytes()).toBe(4 * bytes + 2 * 64 * 4 + 4 + 2 * 256 * 8);
  });

  test('inference keeps one shared activation set; training without checkpointing one per layer', () => {
    const inf = new Plan(dims, base);
    expect(inf.perLayerActivations).toBe(false);
    expect(names(inf)).toContain('act.x1');
    expect(names(inf)).not.toContain('act.0.x1');
    const one = new Plan({ ...dims, numLayers: 1 }, { ...base, training: true });
    expect(one.perLayerActivations).toBe(true);
    expect(names(one)).toContain('act.0.x1'); // even with a single layer
    const ckpt = new Plan(dims, { ...base, training: true, checkpointing: true });
    expect(ckpt.perLayerActivations).toBe(false);
    expect(names(ckpt)).toContain('act.x1');
  });
});
