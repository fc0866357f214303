import { describe, expect, test } from 'vitest';
import { AdapterFileError, ModelFileError } from '../errors.ts';
import { checkFiniteAdapter, checkFiniteWeight, firstNonFinite } from './finite.ts';

describe('non-finite values', () => {
  test('firstNonFinite finds the first NaN or ±Inf, and nothing in finite data (extremes included)', () => {
    expect(firstNonFinite(new Float32Array(0))).toBe(-1);
    expect(firstNonFinite(Float32Array.of(0, -0, 1, -3.4028234663852886e38, 3.4028234663852886e38, 1e-45))).toBe(-1);
    for (const bad of [NaN, Infinity, -Infinity]) {
      const a = new Float32Array(1000);
      a[617] = bad;
      a[900] = bad;
      expect(firstNonFinite(a)).toBe(617);
      // Every position of a short array, so each of the four sums and the tail are covered.
      for (let len = 1; len <= 9; len++) {
        for (let k = 0; k < len; k++) {
          const b = new Float32Array(len).fill(1.5);
          b[k] = bad;
          expect(firstNonFinite(b), `${bad} at ${k} of ${len}`).toBe(k);
        }
      }
    }
  });

  test('a base weight with NaN is refused naming the tensor, the file and the position', () => {
    const a = new Float32Array(64);
    a[3] = Infinity;
    a[10] = NaN;
    expect(() => checkFiniteWeight(a, 'model.layers.1.mlp.down_proj.weight', 'model.safetensors')).toThrow(ModelFileError);
    try {
      checkFiniteWeight(a, 'model.layers.1.mlp.down_proj.weight', 'model.safetensors');
    } catch (e) {
      expect((e as ModelFileError).message).toBe('model.safetensors: tensor "model.layers.1.mlp.down_proj.weight" holds Infinity at index 3 (2 of 64 values are NaN or infinite).');
      expect((e as ModelFileError).details).toMatchObject({ tensor: 'model.layers.1.mlp.down_proj.weight', index: 3, reason: 'non-finite' });
    }
    expect(() => checkFiniteWeight(new Float32Array(64), 't', 'f')).not.toThrow();
  });

  test('an all-NaN adapter tensor is refused naming it', () => {
    const key = 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight';
    const check = () => checkFiniteAdapter(new Float32Array(16).fill(NaN), key, 'adapter_model.safetensors');
    expect(check).toThrow(AdapterFileError);
    expect(check).toThrow(`adapter_model.safetensors: tensor "${key}" holds NaN at index 0 (16 of 16 values are NaN or infinite).`);
  });
});
