// --double-quant: the absmax the kernels use are bitsandbytes' double-quantized ones (8-bit codes,
// blocks of 256, mean offset), dequantized; everything else is plain NF4.
import { afterAll, beforeAll, expect, test } from 'vitest';
import { fileURLToPath } from 'node:url';
import { Gpu } from '../gpu/runtime.ts';
import { openModelFolder } from '../io/model-folder.ts';
import { directorySources } from '../node/fs-source.ts';
import { doubleDequantize, doubleQuantize } from '../quant/nf4.ts';
import { openModel } from './open.ts';

const dir = fileURLToPath(new URL('../../fixtures/models/tiny-qwen2', import.meta.url));
let gpu: Gpu;
beforeAll(async () => {
  gpu = await Gpu.create();
});
afterAll(() => gpu?.destroy());

test('double quantization replaces each absmax by its 8-bit round trip', async () => {
  const open = async (doubleQuant: boolean) =>
    openModel(gpu, await openModelFolder(await directorySources(dir)), { quant: 'nf4', doubleQuant, batch: 1, seqLen: 8, training: false });
  const plain = await open(false), dq = await open(true);
  for (const name of ['layers.0.q_proj.absmax', 'layers.1.down_proj.absmax']) {
    const a = await gpu.readF32(plain.plan.tensor(name));
    const b = await gpu.readF32(dq.plan.tensor(name));
    expect(b).toEqual(doubleDequantize(doubleQuantize(a)));
    expect(b).not.toEqual(a);
    // Packed codes are the same: DQ only touches the scales.
    const w = name.replace('absmax', 'weight');
    expect(await gpu.readU32(dq.plan.tensor(w))).toEqual(await gpu.readU32(plain.plan.tensor(w)));
  }
  await expect(openModel(gpu, await openModelFolder(await directorySources(dir)), { quant: 'none', doubleQuant: true, batch: 1, seqLen: 8, training: false }))
    .rejects.toThrow(/NF4/);
});
