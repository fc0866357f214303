import { describe, expect, test } from 'vitest';
import { Plan, type ModelDims, type PlanOptions } from './plan.ts';
import type { Proj } from './lora.ts';

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

  test('gemma 2/3 sandwich norms: two more norm weights per layer, the sublayer outputs and their rstd saved; gemma 3 local RoPE tables', () => {
    const g = new Plan({ ...dims, sandwichNorms: true, ropeLocalTheta: 10000 }, { ...base, batch: 2, training: true });
    const plain = new Plan(dims, { ...base, batch: 2, training: true });
    const N = 2 * 16;
    for (let l = 0; l < 2; l++) {
      for (const n of ['pre_feedforward_layernorm', 'post_feedforward_layernorm']) expect(g.row(`layers.${l}.${n}`)).toMatchObject({ category: 'weights', bytes: 64 * 4 });
      for (const n of ['ao', 'mo']) expect(g.row(`act.${l}.${n}`).bytes).toBe(N * 64 * 4);
      for (const n of ['rstd3', 'rstd4']) expect(g.row(`act.${l}.${n}`).bytes).toBe(N * 4);
    }
    for (const n of ['rope.local.cos', 'rope.local.sin']) expect(g.row(n)).toMatchObject({ category: 'weights', bytes: (40 * 16 / 2) * 4 });
    const perLayer = 2 * 64 * 4 + (2 * N * 64 + 2 * N) * 4;
    expect(g.peakBytes() - plain.peakBytes()).toBe(2 * perLayer + 2 * (40 * 16 / 2) * 4);
    // f16 storage: ao and mo join the f16 image in a group of their own; their rstd stay f32 per layer.
    const h = new Plan({ ...dims, sandwichNorms: true }, { ...base, batch: 2, training: true, storage: 'f16' });
    expect(h.savedFields.get('ao')!.group).toBe(h.savedFields.get('mo')!.group);
    expect(h.savedFields.get('ao')!.group).not.toBe(h.savedFields.get('h2')!.group);
    expect(names(h)).toContain('act.1.rstd3');
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
    expect(names(ckpt)).toContain('act.x2');
  });

  test('cheap recompute with one shared set: x1 shares x2, m lives in grad.dg; never in the exact per-layer f32 path', () => {
    const ckpt = new Plan(dims, { ...base, training: true, checkpointing: true });
    expect(ckpt.cheapRecompute).toBe(true);
    expect(names(ckpt)).not.toContain('act.x1');
    expect(names(ckpt)).not.toContain('act.m');
    expect(names(ckpt)).toContain('grad.dg');
    const plain = new Plan(dims, { ...base, training: true, storage: 'f32' });
    expect(plain.cheapRecompute).toBe(false);
    for (const n of ['act.0.x1', 'act.0.x2', 'act.0.m']) expect(names(plain)).toContain(n);
    const inf = new Plan(dims, base);
    expect(inf.cheapRecompute).toBe(false);
    expect(names(inf)).toContain('act.m');
  });

  test('f16 storage while training: f16 images per layer over three f32 working buffers, 256-byte aligned views', () => {
    const lora = { rank: 4, alpha: 8, dropout: 0, rslora: false, targets: ['q_proj', 'v_proj', 'down_proj'] as Proj[] };
    const f32 = new Plan(dims, { ...base, training: true, lora, storage: 'f32' });
    const f16 = new Plan(dims, { ...base, training: true, lora, storage: 'f16' });
    expect(f32.savedF16).toBe(false);
    expect(f16.savedF16).toBe(true);
    expect(f16.savedGroups.map((g) => g.name)).toEqual(['act.work.0', 'act.work.1', 'act.work.2']);
    for (const [name, f] of f16.savedFields) {
      expect(f.offset % 64, name).toBe(0);
      expect(f.offset + f.count, name).toBeLessThanOrEqual(f16.savedGroups.find((g) => g.name === f.group)!.floats);
    }
    for (const g of f16.savedGroups) expect((g.image * 2) % 256, g.name).toBe(0);
    expect([...f16.savedFields.keys()].sort()).toEqual(['U.down_proj', 'U.q_proj', 'U.v_proj', 'g', 'h2', 'k', 'o', 'q', 'u', 'v']);
    // Per layer: the image (half a float per saved float) and lse; x2 and the rstd are shared (x1 in
    // x2's buffer, m in grad.dg: plan.cheapRecompute).
    expect(f16.row('act.1.f16').bytes).toBe(f16.savedFloats * 2);
    expect(names(f16)).toContain('act.1.lse');
    expect(names(f16).filter((n) => n.startsWith('act.0.'))).toEqual(['act.0.f16', 'act.0.lse']);
    for (const n of ['x2', 'rstd1', 'rstd2']) expect(names(f16), n).toContain(`act.${n}`);
    expect(f16.cheapRecompute).toBe(true);
    expect(f16.byCategory().activations).toBeLessThan(f32.byCategory().activations);
    // Checkpointing and inference save nothing per layer: storage changes only the tables there.
    expect(new Plan(dims, { ...base, training: true, checkpointing: true, storage: 'f16' }).savedF16).toBe(false);
    expect(new Plan(dims, { ...base, storage: 'f16' }).savedF16).toBe(false);
  });

  test('a run over f32 tables keeps their bytes while its activations follow its own storage', () => {
    const lora = { rank: 4, alpha: 8, dropout: 0, rslora: false, targets: ['q_proj'] as Proj[] };
    const p = new Plan(dims, { ...base, training: true, lora, storage: 'f16', tableStorage: 'f32' });
    expect(p.tablesF16).toBe(false);
    expect(p.savedF16).toBe(true);
    expect(p.row('embed').bytes).toBe(256 * 64 * 4);
    expect(new Plan(dims, { ...base, storage: 'f16' }).row('embed').bytes).toBe(256 * 64 * 2);
  });
});
