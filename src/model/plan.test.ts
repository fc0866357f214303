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
    expect(names(plain).some((n) => n.startsWith('kv.') || n.startsWith('last.'))).toBe(false);
    expect(p.peakBytes() - plain.peakBytes()).toBe(4 * bytes + 2 * 64 * 4 + 4);
  });

  test('qwen3 q/k norms: weights of head_dim per layer, the pre-norm q, k and their rstd saved, one dk scratch', () => {
    const q3 = new Plan({ ...dims, qkNorm: true }, { ...base, batch: 2, training: true });
    const plain = new Plan(dims, { ...base, batch: 2, training: true });
    const N = 2 * 16;
    for (let l = 0; l < 2; l++) {
      for (const n of ['q_norm', 'k_norm']) expect(q3.row(`layers.${l}.${n}`)).toMatchObject({ category: 'weights', bytes: 16 * 4, phase: 'weights' });
      expect(q3.row(`act.${l}.qr`).bytes).toBe(N * 4 * 16 * 4);
      expect(q3.row(`act.${l}.kr`).bytes).toBe(N * 2 * 16 * 4);
      expect(q3.row(`act.${l}.rstdq`).bytes).toBe(N * 4 * 4);
      expect(q3.row(`act.${l}.rstdk`).bytes).toBe(N * 2 * 4);
    }
    expect(q3.row('grad.dkr').bytes).toBe(N * 2 * 16 * 4);
    const perLayer = 2 * 16 * 4 + (N * 4 * 16 + N * 2 * 16 + N * 4 + N * 2) * 4;
    expect(q3.peakBytes() - plain.peakBytes()).toBe(2 * perLayer + N * 2 * 16 * 4);
    expect(names(plain).some((n) => n.includes('norm') && n.startsWith('layers.') && !n.includes('layernorm'))).toBe(false);
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
