import { describe, expect, test } from 'vitest';
import { ModelFileError } from '../errors.ts';
import { assertClose, goldenArray, loadGolden } from '../testing/compare.ts';
import { ropeTables } from '../kernels/rope_forward.ts';
import { longropeIsLong, parseRope, ropeInvFreq, ropeTablesFor, type RopeConfig } from './rope.ts';

describe('RoPE from HF config fields', () => {
  // fixtures/goldens/rope.json (scripts/goldens/rope.py) stores each case's config fields beside
  // the inv_freq PyTorch computed from them, v4 layout and v5 rope_parameters alike.
  const golden = loadGolden('rope');
  test.each(Object.keys(golden))('inv_freq is bit-exact with transformers: %s', (name) => {
    const c = golden[name] as Record<string, unknown>;
    const { theta, rope } = parseRope(c, 8192, `rope.json#${name}`);
    const { invFreq, attentionScaling } = ropeInvFreq({ headDim: c.head_dim as number, ropeTheta: theta, rope });
    assertClose(`${name}.inv_freq`, invFreq, goldenArray(golden[name].inv_freq), { atol: 0, rtol: 0 });
    expect(attentionScaling).toBe(1);
  });

  test('rejects rope types it does not implement, and partial rotary dims', () => {
    expect(() => parseRope({ head_dim: 8, rope_scaling: { rope_type: 'yarn', factor: 4 } }, 2048)).toThrow(ModelFileError);
    const partial = (() => {
      try {
        parseRope({ head_dim: 8, partial_rotary_factor: 0.5 }, 2048);
      } catch (e) {
        return e;
      }
    })();
    expect(partial).toBeInstanceOf(ModelFileError);
    expect((partial as ModelFileError).details.field).toBe('partial_rotary_factor');
    const rope = { type: 'dynamic' } as unknown as RopeConfig;
    expect(() => ropeInvFreq({ headDim: 8, ropeTheta: 1e4, rope })).toThrow(ModelFileError);
  });
});

describe('LongRoPE (Phi-3-128k, Phi-3.5)', () => {
  // fixtures/goldens/longrope.json (scripts/goldens/longrope.py): inv_freq with each factor set, the
  // attention factor, and cos/sin rows around the original context, from the torch transcription.
  const golden = loadGolden('longrope') as Record<string, any>;
  test.each(Object.keys(golden))('%s: short and long inv_freq, attention factor and tables match torch', (name) => {
    const c = golden[name];
    const { theta, rope } = parseRope(c, c.max_position_embeddings, `longrope.json#${name}`);
    expect(rope.type).toBe('longrope');
    const dims = { headDim: c.head_dim as number, ropeTheta: theta, rope };
    const short = ropeInvFreq(dims), long = ropeInvFreq(dims, true);
    // Two f32 ulps: torch's CPU pow(10000.0, t) is a vectorized powf with a 1-ulp bound, not correctly
    // rounded; at head dim 96 (Phi-3.5) it lands one ulp from the rounded f64 power in pair 20, and
    // the factor product and reciprocal round that into two ulps of inv_freq.
    const ulp = { atol: 0, rtol: 2 ** -22 };
    assertClose(`${name}.inv_freq_short`, short.invFreq, goldenArray(c.inv_freq_short), ulp);
    assertClose(`${name}.inv_freq_long`, long.invFreq, goldenArray(c.inv_freq_long), ulp);
    expect(short.attentionScaling).toBeCloseTo(c.attention_factor, 12);
    expect(long.attentionScaling).toBe(short.attentionScaling);
    // A run reaching the original context takes the short set; one past it, the long set (HF picks
    // by max(position_ids) + 1 > original_max_position_embeddings).
    const orig = rope.originalMaxPositionEmbeddings, half = c.head_dim / 2, pos = c.positions as number[];
    for (const [P, which] of [[orig, 'short'], [orig + 8, 'long']] as const) {
      expect(longropeIsLong(rope, P)).toBe(which === 'long');
      // The run's tables are those of the chosen set, with the attention factor on cos and sin ...
      const set = ropeInvFreq(dims, which === 'long');
      const { cos, sin } = ropeTablesFor(dims, P), ref = ropeTables(set.invFreq, P, set.attentionScaling);
      expect(cos).toEqual(ref.cos);
      expect(sin).toEqual(ref.sin);
      // ... and the table formula gives torch's rows from torch's inv_freq (from ours, pair 20 of the
      // head dim 96 case differs by 4e-6 at position 4095: the two ulps above, times the position).
      const torch = ropeTables(goldenArray(c[`inv_freq_${which}`]), P, c.attention_factor);
      const rows = (tab: Float32Array) => Float32Array.from(pos.filter((p) => p < P).flatMap((p) => [...tab.subarray(p * half, (p + 1) * half)]));
      const want = (k: string) => goldenArray(c[`${k}_${which}`]).subarray(0, pos.filter((p) => p < P).length * half);
      assertClose(`${name} cos ${which}`, rows(torch.cos), want('cos'), { atol: 2e-6, rtol: 1e-5 });
      assertClose(`${name} sin ${which}`, rows(torch.sin), want('sin'), { atol: 2e-6, rtol: 1e-5 });
    }
  });

  test('refuses factor lists of the wrong length, naming the field', () => {
    const cfg = { head_dim: 8, max_position_embeddings: 64, original_max_position_embeddings: 16,
      rope_scaling: { type: 'longrope', short_factor: [1, 1, 1], long_factor: [1, 2, 3, 4] } };
    expect(() => parseRope(cfg, 64)).toThrow(/short_factor has 3 entries; the head dim 8 needs 4/);
  });
});
