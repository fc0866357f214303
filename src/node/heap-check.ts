// Measures what loading a model holds in the JS heap: writes a synthetic Llama checkpoint of about
// 135 MB (f32) to a temporary folder, tensor by tensor, then loads it with NF4 quantization and
// records live memory (V8 heap + ArrayBuffers, after a forced GC) at every tensor. Streaming means
// the peak stays near the largest single tensor, not the model. Run with `node --expose-gc`
// (scripts/heap-check.mjs); prints one JSON line.
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Gpu } from '../gpu/runtime.ts';
import { openModelFolder } from '../io/model-folder.ts';
import { planSafetensors, type TensorToWrite } from '../io/safetensors.ts';
import { parseModelConfig } from '../model/config.ts';
import { expectedWeights } from '../model/weights.ts';
import { openModel } from '../model/open.ts';
import { directorySources } from './fs-source.ts';

const CONFIG = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: 8192, hidden_size: 512, intermediate_size: 1536,
  num_hidden_layers: 8, num_attention_heads: 8, num_key_value_heads: 4, head_dim: 64, rms_norm_eps: 1e-5,
  rope_theta: 10000, max_position_embeddings: 256, tie_word_embeddings: false, bos_token_id: 1, eos_token_id: 2,
};

function live(): number {
  (globalThis as { gc?: () => void }).gc?.();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

export async function heapCheck(): Promise<Record<string, number | boolean>> {
  const dir = await mkdtemp(join(tmpdir(), 'webtune-heap-'));
  try {
    const specs = expectedWeights(parseModelConfig(CONFIG));
    // Plan the file from sizes alone, then generate and write each tensor in turn.
    const plan = planSafetensors(specs.map((s) => [s.name, { dtype: 'F32', shape: s.shape, data: { byteLength: 4 * s.shape.reduce((a, b) => a * b, 1) } as ArrayBufferView } as TensorToWrite] as const));
    const fh = await open(join(dir, 'model.safetensors'), 'w');
    await fh.write(plan.head);
    let largest = 0;
    for (const { name, tensor } of plan.order) {
      const n = tensor.data.byteLength / 4;
      largest = Math.max(largest, n * 4);
      const data = new Float32Array(n);
      for (let i = 0; i < n; i++) data[i] = name.includes('norm') ? 1 : Math.sin(i * 0.618) * 0.02;
      await fh.write(new Uint8Array(data.buffer));
    }
    await fh.close();
    const { writeFile } = await import('node:fs/promises');
    await writeFile(join(dir, 'config.json'), JSON.stringify(CONFIG));
    const gpu = await Gpu.create();
    try {
      const baseline = live();
      let peak = baseline;
      const folder = await openModelFolder(await directorySources(dir));
      await openModel(gpu, folder, { quant: 'nf4', batch: 1, seqLen: 16, training: false }, () => {
        peak = Math.max(peak, live());
      });
      peak = Math.max(peak, live());
      return { fileBytes: plan.size, largestTensorBytes: largest, baselineBytes: baseline, peakLiveBytes: peak, heldBytes: peak - baseline, gcForced: typeof (globalThis as { gc?: unknown }).gc === 'function' };
    } finally {
      gpu.destroy();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
