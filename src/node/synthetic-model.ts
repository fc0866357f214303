// A synthetic Llama checkpoint of about 135 MB (f32), written tensor by tensor so that writing it
// never holds more than one tensor: the subject of the memory checks for loading
// (src/node/heap-check.ts) and merging (src/node/merge-heap-check.ts).
import { open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { planSafetensors, type TensorLayout } from '../io/safetensors.ts';
import { parseModelConfig } from '../model/config.ts';
import { expectedWeights } from '../model/weights.ts';

export const SYNTHETIC_CONFIG = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: 8192, hidden_size: 512, intermediate_size: 1536,
  num_hidden_layers: 8, num_attention_heads: 8, num_key_value_heads: 4, head_dim: 64, rms_norm_eps: 1e-5,
  rope_theta: 10000, max_position_embeddings: 256, tie_word_embeddings: false, bos_token_id: 1, eos_token_id: 2,
};

/** Writes config.json and model.safetensors into `dir`; returns the file size and the largest tensor's bytes. */
export async function writeSyntheticCheckpoint(dir: string): Promise<{ fileBytes: number; largestTensorBytes: number }> {
  const specs = expectedWeights(parseModelConfig(SYNTHETIC_CONFIG));
  // Plan the file from sizes alone, then generate and write each tensor in turn.
  const plan = planSafetensors(specs.map((s): [string, TensorLayout] => [s.name, { dtype: 'F32', shape: s.shape, data: { byteLength: 4 * s.shape.reduce((a, b) => a * b, 1) } }]));
  const fh = await open(join(dir, 'model.safetensors'), 'w');
  let largest = 0;
  try {
    await fh.write(plan.head);
    for (const { name, tensor } of plan.order) {
      const n = tensor.data.byteLength / 4;
      largest = Math.max(largest, n * 4);
      const data = new Float32Array(n);
      for (let i = 0; i < n; i++) data[i] = name.includes('norm') ? 1 : Math.sin(i * 0.618) * 0.02;
      await fh.write(new Uint8Array(data.buffer));
    }
  } finally {
    await fh.close();
  }
  await writeFile(join(dir, 'config.json'), JSON.stringify(SYNTHETIC_CONFIG));
  return { fileBytes: plan.size, largestTensorBytes: largest };
}

/** Live JS memory (V8 heap + ArrayBuffers) after a forced collection (needs `node --expose-gc`). */
export function live(): number {
  (globalThis as { gc?: () => void }).gc?.();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

/** live() once the collector has finished: V8 frees ArrayBuffer memory on a background sweeper
 *  after gc(), so a single reading can still count buffers that are already garbage. Collects and
 *  yields to the event loop until the figure stops falling. */
export async function settledLive(): Promise<number> {
  let best = live();
  for (let i = 0; i < 10; i++) {
    await new Promise((ok) => setTimeout(ok, 1));
    const now = live();
    if (now >= best) break;
    best = now;
  }
  return best;
}
