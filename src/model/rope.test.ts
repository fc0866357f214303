import { describe, expect, test } from 'vitest';
import { ModelFileError } from '../errors.ts';
import { assertClose, goldenArray, loadGolden } from '../testing/compare.ts';
import { parseRope, ropeInvFreq, type RopeConfig } from './rope.ts';

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
