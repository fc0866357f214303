import { describe, expect, test } from 'vitest';
import { parseAdapterConfig } from '../io/peft.ts';
import { loadGolden } from '../testing/compare.ts';
import { loraScaling } from './lora.ts';

describe('loraScaling (PEFT: alpha / r, rsLoRA alpha / sqrt(r))', () => {
  // fixtures/goldens/lora.json: scripts/goldens/lora.py computes the scale as PEFT's layer.py does.
  const golden = loadGolden('lora');
  test.each(Object.keys(golden))('equals PyTorch\'s scale: %s', (name) => {
    const c = golden[name];
    const scale = loraScaling({ rank: c.R as number, alpha: c.alpha as number, rslora: c.rslora === 1 });
    expect(Math.abs(scale - (c.scale as number))).toBeLessThan(1e-12);
  });

  test('from an adapter_config.json as current PEFT writes it, and with rsLoRA', () => {
    const cfg = parseAdapterConfig({ peft_type: 'LORA', r: 8, lora_alpha: 32, lora_dropout: 0.05, target_modules: ['v_proj', 'q_proj'], use_rslora: false });
    expect(loraScaling({ rank: cfg.r, alpha: cfg.loraAlpha, rslora: cfg.useRslora })).toBe(4);
    expect(loraScaling({ rank: 16, alpha: 32, rslora: true })).toBe(8);
  });
});
