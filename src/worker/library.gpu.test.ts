// The adapter library behind the site's chat, in Node on a real WebGPU device (the e2e spec
// e2e/library.spec.ts drives the same path through the page, in minutes): adapters imported into
// the library, "Answer with" (useAdapter) switching between them over one loaded base without a
// model load or a request, "Compare with" the base, eviction and reopening from the store, delete,
// and an entry refused for another base. Each swapped-in adapter must answer exactly as the same
// files imported alone into a fresh engine do.
import { afterAll, describe, expect, test } from 'vitest';
import { memoryStore, type KeyValueStore } from '../io/cache.ts';
import { writeSafetensors } from '../io/safetensors.ts';
import type { Gpu } from '../gpu/runtime.ts';
import { AdapterFileError, UsageError } from '../errors.ts';
import { demoHost } from '../testing/demo-host.ts';
import { Engine, type EngineHost } from './engine.ts';
import type { GenerateOptions } from './api.ts';

const gpus: Gpu[] = [];
let shared: Promise<Gpu> | undefined;
/** Both engines share one device: each new device compiles every kernel again (about 10 s on
 *  SwiftShader), and an engine keeps nothing on the device that the other could see. */
const host = (store: KeyValueStore, log: string[]): EngineHost => {
  const h = demoHost(store, log, gpus);
  const create = h.createGpu!;
  return { ...h, createGpu: () => (shared ??= create()) };
};
afterAll(() => {
  for (const g of gpus) g.destroy();
});

/** PEFT files of a rank-2 adapter on q_proj and v_proj of the demo (hidden 64, 4 heads and 2 KV
 *  heads of 16), seeded values large enough to move the greedy answer. */
function peftFiles(seed: number): File[] {
  let s = seed >>> 0;
  const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32 - 0.5) * 1.5;
  const tensors: [string, { dtype: 'F32'; shape: number[]; data: Float32Array }][] = [];
  for (let l = 0; l < 2; l++) {
    for (const [p, out] of [['q_proj', 64], ['v_proj', 32]] as const) {
      const pre = `base_model.model.model.layers.${l}.self_attn.${p}`;
      tensors.push([`${pre}.lora_A.weight`, { dtype: 'F32', shape: [2, 64], data: Float32Array.from({ length: 128 }, rand) }]);
      tensors.push([`${pre}.lora_B.weight`, { dtype: 'F32', shape: [out, 2], data: Float32Array.from({ length: out * 2 }, rand) }]);
    }
  }
  const cfg = JSON.stringify({ peft_type: 'LORA', r: 2, lora_alpha: 4, target_modules: ['q_proj', 'v_proj'], task_type: 'CAUSAL_LM', base_model_name_or_path: 'demo' });
  return [new File([cfg], 'adapter_config.json'), new File([writeSafetensors(tensors, { format: 'pt' }) as Uint8Array<ArrayBuffer>], 'adapter_model.safetensors')];
}

const PROMPT = 'How much does 1 cup of flour weigh?';
// Two tokens: the first from the prompt's pass, the second through the KV cache, each adapter's own
// (five distinct answers below); every further token costs about 3 s on SwiftShader, for ~20 answers.
const GREEDY: GenerateOptions = { adapter: true, chat: false, maxNewTokens: 2, temperature: 0, topK: 0, topP: 1, seed: 0 };
// A guard, not a pace: about 20 short greedy generations and two base loads of the demo model on
// SwiftShader, on a machine shared with other test runs.
const GUARD_MS = 900_000;

describe('engine: the adapter library in chat', () => {
  test('answer with any library adapter or the base, compare, evict and reopen, delete; the base is loaded once', async () => {
    const store = memoryStore(), log: string[] = [];
    const e = new Engine(host(store, log));
    await e.loadModel({ kind: 'demo' }, 'nf4', () => {});
    const base = await e.generate(PROMPT, { ...GREEDY, adapter: false }, () => {});
    const ids: string[] = [];
    for (const seed of [1, 2, 3, 4]) ids.push((await e.importAdapter(peftFiles(seed))).id);
    const list = await e.listAdapters();
    expect(list.entries.map((x) => x.id).sort()).toEqual([...ids].sort());
    expect(list.entries.every((x) => x.origin === 'imported' && x.rank === 2 && x.bytes > 0)).toBe(true);
    expect(list.current).toBe(ids[3]); // the last import is chat's current adapter
    const requests = log.length;

    // Each adapter as the only one: imported into a fresh engine over the same store (the base from
    // its cache), where it is chat's current adapter with nothing opened beside it.
    const alone: string[] = [];
    const f = new Engine(host(store, []));
    await f.loadModel({ kind: 'demo' }, 'nf4', () => {});
    for (const [i, seed] of [1, 2, 3, 4].entries()) {
      await f.importAdapter(peftFiles(seed));
      alone[i] = await f.generate(PROMPT, GREEDY, () => {});
    }
    expect(new Set([base, ...alone]).size).toBe(5); // every adapter moves the answer its own way

    // "Answer with" each in turn, "Compare with" the base after each: one base, no request.
    for (const [i, id] of ids.entries()) {
      await e.useAdapter(id);
      expect(await e.generate(PROMPT, GREEDY, () => {})).toBe(alone[i]);
      if (i === 1) expect(await e.generate(PROMPT, { ...GREEDY, adapter: false }, () => {})).toBe(base);
    }
    // Three stay opened: the first was evicted when the fourth opened, and comes back from the store.
    await e.useAdapter(ids[0]);
    expect(await e.generate(PROMPT, GREEDY, () => {})).toBe(alone[0]);
    // Side by side, as the chat's two columns do: A, then B, then A again.
    await e.useAdapter(ids[1]);
    const b = await e.generate(PROMPT, GREEDY, () => {});
    await e.useAdapter(ids[2]);
    const c = await e.generate(PROMPT, GREEDY, () => {});
    await e.useAdapter(ids[1]);
    expect([b, c, await e.generate(PROMPT, GREEDY, () => {})]).toEqual([alone[1], alone[2], alone[1]]);
    // null: the current adapter (the last import).
    await e.useAdapter(null);
    expect(await e.generate(PROMPT, GREEDY, () => {})).toBe(alone[3]);
    expect(log.length).toBe(requests);

    // Delete an opened one: it is gone from the list and cannot be picked; the others still answer.
    await e.deleteAdapter(ids[1]);
    expect((await e.listAdapters()).entries.map((x) => x.id)).not.toContain(ids[1]);
    await expect(e.useAdapter(ids[1])).rejects.toBeInstanceOf(UsageError);
    await e.useAdapter(ids[2]);
    expect(await e.generate(PROMPT, GREEDY, () => {})).toBe(alone[2]);

    // Another base (the demo without quantization is another cache key): its library is another
    // list, and an entry of the NF4 base is refused by name.
    await e.loadModel({ kind: 'demo' }, 'none', () => {});
    expect((await e.listAdapters()).entries).toEqual([]);
    const err = await e.useAdapter(ids[0]).catch((x: unknown) => x);
    expect(err).toBeInstanceOf(AdapterFileError);
    expect((err as AdapterFileError).message).toContain('demo:nf4');
  }, GUARD_MS);
});
