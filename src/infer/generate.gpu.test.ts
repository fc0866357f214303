// Generation over the KV cache against the PyTorch reference (scripts/tiny_models.py: a greedy
// continuation of 8 tokens with the trained adapter, for ten tiny checkpoints, five of them with
// sliding windows shorter than the 12-token sequence, Phi-3's LongRoPE switching from the short to
// the long factors as the sequence passes 8 tokens, and the three Gemma families; base in full
// precision and NF4), the cached
// logits against the full forward pass, and the sampling contract.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { fileURLToPath } from 'node:url';
import { Gpu } from '../gpu/runtime.ts';
import { assertClose, loadGolden, tensorMap } from '../testing/compare.ts';
import { openModelFolder } from '../io/model-folder.ts';
import { directorySources } from '../node/fs-source.ts';
import { openModel, type OpenedModel } from '../model/open.ts';
import { PROJS } from '../model/lora.ts';
import { UsageError } from '../errors.ts';
import { generationModel } from './kv-open.ts';
import { generate } from './generate.ts';
import { Rng, sampleToken, type SamplingOptions } from './sample.ts';

// Gemma: GeGLU, (1 + w) norms, the scaled embedding (all three); Gemma 2's attention and final-logit
// softcaps, query_pre_attn_scalar, four norms per layer and a 3-token window in layer 0; Gemma 3's
// q/k norms and its sliding layer's own RoPE base (window 4) next to a linearly scaled global layer.
const GEMMA = ['tiny-gemma', 'tiny-gemma2', 'tiny-gemma3'];
const MODELS = ['tiny-llama', 'tiny-qwen2', 'tiny-mistral', 'tiny-qwen3', 'tiny-mistral-swa', 'tiny-qwen2-swa', 'tiny-phi3', ...GEMMA];
type Golden = Record<string, any>;

let gpu: Gpu;
beforeAll(async () => {
  gpu = await Gpu.create();
});
afterAll(() => gpu?.destroy());

async function openRaw(name: string, quant: 'none' | 'nf4', golden: Golden, positions: number, training = false): Promise<OpenedModel> {
  const dir = fileURLToPath(new URL(`../../fixtures/models/${name}`, import.meta.url));
  const folder = await openModelFolder(await directorySources(dir));
  return openModel(gpu, folder, {
    quant, batch: training ? 2 : 1, seqLen: positions, training,
    lora: { rank: golden.config.r, alpha: golden.config.alpha, dropout: 0, rslora: false, targets: [...PROJS] },
  });
}

/** Opened for inference (batch 1), with the KV cache added. */
async function open(name: string, quant: 'none' | 'nf4', golden: Golden, positions: number): Promise<OpenedModel> {
  const opened = await openRaw(name, quant, golden, positions);
  return { ...opened, model: generationModel(gpu, opened).model };
}

describe.each(MODELS)('%s: greedy generation with the KV cache', (name) => {
  const golden = loadGolden(`model_${name}`) as Golden;
  test.each(['none', 'nf4'] as const)('quant %s reproduces the PyTorch continuation', async (quant) => {
    const { prompt, tokens } = golden[quant].greedy as { prompt: number[]; tokens: number[] };
    const { model, lora } = await open(name, quant, golden, prompt.length + tokens.length);
    lora!.load(tensorMap(golden[quant].adapter));
    const streamed: number[] = [];
    const reads = gpu.counters.readbacks;
    const got = await generate(model, prompt, { maxNewTokens: tokens.length, onToken: (id) => streamed.push(id) });
    expect(got).toEqual(tokens);
    expect(streamed).toEqual(tokens);
    // One readback per new token (its best logit, selected on the GPU: 8 bytes) and nothing else.
    expect(gpu.counters.readbacks - reads).toBe(tokens.length);
  });
});

test('tiny-phi3: a view taking fewer tokens per pass than the sequence re-runs it in steps when LongRoPE switches', async () => {
  // Opened for training (12 positions), viewed for generation with 6 tokens per pass: at the switch
  // to the long factors the 9 tokens so far are run again in passes of 6 and 3.
  const golden = loadGolden('model_tiny-phi3') as Golden;
  const { prompt, tokens } = golden.none.greedy as { prompt: number[]; tokens: number[] };
  const opened = await openRaw('tiny-phi3', 'none', golden, prompt.length + tokens.length, true);
  opened.lora!.load(tensorMap(golden.none.adapter));
  const view = generationModel(gpu, opened, 6);
  expect(view.model.plan.maxTokens).toBe(6);
  expect(await generate(view.model, prompt, { maxNewTokens: tokens.length })).toEqual(tokens);
  view.dispose();
});

describe('tiny-llama: the cached path and sampling', () => {
  const golden = loadGolden('model_tiny-llama') as Golden;
  const { prompt, tokens } = golden.none.greedy as { prompt: number[]; tokens: number[] };
  const seq = [...prompt, ...tokens];
  const T = seq.length;
  let m: OpenedModel;
  beforeAll(async () => {
    m = await open('tiny-llama', 'none', golden, T);
    m.lora!.load(tensorMap(golden.none.adapter));
  });

  const V = () => m.config.vocabSize;
  async function fullLogits(): Promise<Float32Array> {
    const b = { B: 1, T, ids: Uint32Array.from(seq), positions: Uint32Array.from(seq, (_, i) => i), targets: new Int32Array(T) };
    return gpu.readF32(m.model.forwardLogits(b), 0, T * V());
  }
  /** Logits of every position from the cache, in steps of the given sizes (a prefill then decode). */
  async function cachedLogits(steps: number[], noAdapter = false): Promise<Float32Array> {
    const out = new Float32Array(T * V());
    let pos = 0;
    for (const n of steps) {
      // A step yields only its last row; earlier rows of a multi-token step come from shorter runs.
      const logits = m.model.forwardNext(Uint32Array.from(seq.slice(pos, pos + n)), pos, { noAdapter });
      out.set(await gpu.readF32(logits, 0, V()), (pos + n - 1) * V());
      pos += n;
    }
    return out;
  }

  test('logits from the cache equal forwardLogits at every position', async () => {
    const want = await fullLogits();
    const ones = await cachedLogits(Array(T).fill(1)); // decode from position 0
    assertClose('one token per step', ones, want, { atol: 2e-4, rtol: 1e-3 });
    // A prefill of 4, a chunk of 3 at pos0 = 4 (several new rows against a past), then single tokens.
    const rows = [3, 6, ...Array.from({ length: T - 7 }, (_, i) => 7 + i)];
    const mixed = await cachedLogits([4, 3, ...Array(T - 7).fill(1)]);
    for (const r of rows) assertClose(`row ${r}`, mixed.subarray(r * V(), (r + 1) * V()), want.subarray(r * V(), (r + 1) * V()), { atol: 2e-4, rtol: 1e-3 });
  });

  test('noAdapter gives the base model: the logits of the same model with LoRA B = 0', async () => {
    const trained = tensorMap(golden.none.adapter);
    const zeroB = new Map([...trained].map(([k, v]) => [k, k.includes('lora_B') ? new Float32Array(v.length) : v]));
    m.lora!.load(zeroB);
    const base = await fullLogits();
    m.lora!.load(trained);
    const withAdapter = await fullLogits();
    const off = await cachedLogits([6, T - 6], true);
    for (const r of [5, T - 1]) {
      const at = (x: Float32Array) => x.subarray(r * V(), (r + 1) * V());
      assertClose(`base row ${r}`, at(off), at(base), { atol: 2e-4, rtol: 1e-3 });
      expect(Math.max(...at(off).map((x, i) => Math.abs(x - at(withAdapter)[i])))).toBeGreaterThan(1e-2); // the adapter matters
    }
    const greedyBase = await generate(m.model, prompt, { maxNewTokens: 4, noAdapter: true });
    expect(greedyBase).not.toEqual(tokens.slice(0, 4));
  });

  test('sampling: same seed same tokens, another seed other tokens, top-k 1 is greedy', async () => {
    const o = { maxNewTokens: 4, temperature: 1.5 };
    const a = await generate(m.model, prompt, { ...o, seed: 1 });
    const b = await generate(m.model, prompt, { ...o, seed: 1 });
    const c = await generate(m.model, prompt, { ...o, seed: 2 });
    expect(b).toEqual(a);
    expect(c).not.toEqual(a);
    expect(await generate(m.model, prompt, { ...o, seed: 3, topK: 1 })).toEqual(tokens.slice(0, 4));
    expect(await generate(m.model, prompt, { ...o, seed: 3, topP: 1e-6 })).toEqual(tokens.slice(0, 4)); // nucleus of one
  });

  test('sampling from the GPU-selected candidates gives the CPU sampler\'s tokens over whole rows, reading back at most 2 KiB a token', async () => {
    /** The reference: every token from its whole logits row, sampled on the CPU. */
    async function onCpu(o: SamplingOptions & { seed: number }, n: number): Promise<number[]> {
      const rng = new Rng(o.seed), out: number[] = [];
      let logits = m.model.forwardNext(Uint32Array.from(prompt), 0);
      for (;;) {
        out.push(sampleToken(await gpu.readF32(logits, 0, V()), o, rng));
        if (out.length === n) return out;
        logits = m.model.forwardNext(Uint32Array.of(out[out.length - 1]), prompt.length + out.length - 1);
      }
    }
    const n = T - prompt.length;
    for (const o of [
      { temperature: 0, seed: 0 },
      { temperature: 1.5, topK: 5, seed: 1 },
      { temperature: 2, topK: 40, topP: 0.9, seed: 4 },
      { temperature: 0.7, topK: 255, seed: 9 }, // 256 candidates, the most one token reads
    ]) {
      const c0 = { ...gpu.counters };
      const got = await generate(m.model, prompt, { ...o, maxNewTokens: n });
      expect(gpu.counters.readbacks - c0.readbacks).toBe(n);
      expect(gpu.counters.readbackBytes - c0.readbackBytes).toBeLessThanOrEqual(n * 2048);
      expect(got, JSON.stringify(o)).toEqual(await onCpu(o, n));
    }
  });

  test('stops at an EOS id, which ends the result', async () => {
    const eos = tokens[2], stop = tokens.indexOf(eos) + 1;
    const seen: number[] = [];
    const got = await generate(m.model, prompt, { maxNewTokens: 8, eosIds: [eos], onToken: (id) => seen.push(id) });
    expect(got).toEqual(tokens.slice(0, stop));
    expect(seen).toEqual(got);
  });

  test('a model opened for training generates through a view sharing its weights and live adapter', async () => {
    const opened = await openRaw('tiny-llama', 'nf4', golden, T, true);
    opened.lora!.load(tensorMap(golden.nf4.adapter));
    const before = gpu.allocatedBytes;
    const view = generationModel(gpu, opened, T);
    const added = gpu.allocatedBytes - before;
    expect(view.model.plan.byCategory()['kv-cache']).toBeGreaterThan(0);
    // Only activations, scratch and the cache are new: no second copy of the weights or the adapter.
    expect(added).toBe(view.model.plan.bytes((r) => r.phase === 'run' && r.name !== 'lora.params'));
    const g = golden.nf4.greedy as { prompt: number[]; tokens: number[] };
    expect(await generate(view.model, g.prompt, { maxNewTokens: g.tokens.length })).toEqual(g.tokens);
    view.dispose();
    expect(gpu.allocatedBytes).toBe(before);
  });

  test('refuses what the cache cannot hold and bad options, with a UsageError', async () => {
    await expect(generate(m.model, prompt, { maxNewTokens: T })).rejects.toThrow(UsageError);
    await expect(generate(m.model, [], { maxNewTokens: 1 })).rejects.toThrow(UsageError);
    await expect(generate(m.model, [V()], { maxNewTokens: 1 })).rejects.toThrow(UsageError);
    await expect(generate(m.model, prompt, { maxNewTokens: 2, topP: 0 })).rejects.toThrow(UsageError);
  });
});
