// `webtune bench --count`: the real model code against a device that only counts (src/gpu/counting.ts).
import { describe, expect, test } from 'vitest';
import { modelBench, type StepCount } from './model-bench.ts';

const count = async (shape: string, targets: ('q_proj' | 'v_proj' | 'o_proj')[], seqLen = 32, storage: 'f16' | 'f32' = 'f32') =>
  (await modelBench({ shape, seqLen, batch: 1, steps: 1, quant: 'nf4', rank: 4, targets, checkpointing: false, planOnly: false, count: true, storage }))
    .count as { trainStep: StepCount; decodeToken: StepCount; sampleMs: number };

describe('bench --count', () => {
  test('a training step reads back once; a decoded token reads back one logits row', async () => {
    const c = await count('public/models/demo', ['q_proj', 'v_proj']);
    expect(c.trainStep.readbacks).toBe(1);
    expect(c.trainStep.dispatches).toBeGreaterThan(0);
    expect(c.trainStep.passes).toBeGreaterThan(0);
    expect(c.decodeToken.readbacks).toBe(1);
    expect(c.decodeToken.dispatches).toBeGreaterThan(0);
    expect(c.sampleMs).toBeGreaterThan(0);
  }, 60_000);

  test('warm, a training step creates no buffer and no bind group, and a decoded token no buffer', async () => {
    for (const targets of [['q_proj', 'v_proj'], ['q_proj', 'v_proj', 'o_proj']] as const) {
      const c = await count('public/models/demo', [...targets]);
      expect(c.trainStep.buffersCreated).toBe(0);
      expect(c.trainStep.bindGroupsCreated).toBe(0);
      expect(c.decodeToken.buffersCreated).toBe(0);
      expect(c.decodeToken.bindGroupsCreated).toBe(0);
    }
  }, 60_000);

  test('more LoRA targets, more dispatches: the count follows the model code', async () => {
    const qv = await count('public/models/demo', ['q_proj', 'v_proj']);
    const qvo = await count('public/models/demo', ['q_proj', 'v_proj', 'o_proj']);
    // Per layer and target: LoRA forward 2 dispatches, backward 4.
    const layers = 2;
    expect(qvo.trainStep.dispatches - qv.trainStep.dispatches).toBe(layers * 6);
    expect(qvo.decodeToken.dispatches - qv.decodeToken.dispatches).toBe(layers * 2);
  }, 60_000);

  test('f16 storage: per layer 3 packs, 3 unpacks and 3 recomputes more, still nothing created warm', async () => {
    const f32 = await count('public/models/demo', ['q_proj', 'v_proj'], 32, 'f32');
    const f16 = await count('public/models/demo', ['q_proj', 'v_proj'], 32, 'f16');
    const layers = 2;
    expect(f16.trainStep.dispatches - f32.trainStep.dispatches).toBe(layers * 9);
    expect(f16.trainStep.passes).toBe(f32.trainStep.passes);
    expect(f16.trainStep.buffersCreated).toBe(0);
    expect(f16.trainStep.bindGroupsCreated).toBe(0);
    expect(f16.decodeToken.dispatches).toBe(f32.decodeToken.dispatches); // generation saves nothing per layer
  }, 60_000);
});
