// The state classes against a scripted engine: what the panels show follows the engine's events.
import { describe, expect, it, vi } from 'vitest';
import { DatasetError } from '../errors.ts';
import type { StepLog } from '../train/trainer.ts';
import type { EngineApi, TrainEvent } from '../worker/api.ts';
import { Chat, sidesOf } from './chat.svelte.ts';
import { Dataset } from './dataset.svelte.ts';
import { Library } from './library.svelte.ts';
import type { LibraryEntry } from '../worker/api.ts';
import type { Engine } from './engine.ts';
import { Models } from './models.svelte.ts';
import { Studio } from './studio.svelte.ts';
import { Training } from './training.svelte.ts';

// comlink.proxy() marks a function; in-process it stays callable, so a fake engine can call it.
function fake(over: Partial<EngineApi>): Engine {
  return over as unknown as Engine;
}

const log = (step: number, loss: number, val_loss?: number): StepLog => ({ step, epoch: 0, loss, lr: 1e-2, grad_norm: 1, tokens: 100, tokens_per_s: 50, ...(val_loss !== undefined ? { val_loss } : {}) });

describe('Training', () => {
  it('records steps, checkpoints and the end of a run', async () => {
    const engine = fake({
      async train(_o, on) {
        for (let s = 1; s <= 4; s++) on({ type: 'step', log: log(s, 5 - s), totalSteps: 4, gpuBytes: { weights: 10, lora: 2 } });
        on({ type: 'checkpoint', step: 4 });
        on({ type: 'done', step: 4 });
      },
    });
    const t = new Training(engine);
    await t.start(64);
    expect(t.phase).toBe('done');
    expect(t.logs.map((l) => l.loss)).toEqual([4, 3, 2, 1]);
    expect(t.lastCheckpoint).toBe(4);
    expect(t.gpuBytes).toEqual({ weights: 10, lora: 2 });
    expect(t.running?.seqLen).toBe(64);
  });

  it('pauses, resumes, and drops the steps a device loss makes the engine redo', async () => {
    let emit: (e: TrainEvent) => void = () => {};
    let finish: () => void = () => {};
    const engine = fake({
      train: (_o, on) => new Promise<void>((res) => { emit = on; finish = res; }),
      resumeTraining: (on) => new Promise<void>((res) => { emit = on; finish = res; }),
      pause: async () => { emit({ type: 'paused', step: 3 }); finish(); },
    });
    const t = new Training(engine);
    const run = t.start(64);
    for (let s = 1; s <= 3; s++) emit({ type: 'step', log: log(s, 4 - s / 10), totalSteps: 10, gpuBytes: {} });
    expect(t.phase).toBe('running');
    await t.pause();
    await run;
    expect(t.phase).toBe('paused');
    expect(t.lastCheckpoint).toBe(3);
    const again = t.resume();
    expect(t.phase).toBe('running');
    for (let s = 4; s <= 6; s++) emit({ type: 'step', log: log(s, 3), totalSteps: 10, gpuBytes: {} });
    emit({ type: 'device-lost', resumedFromStep: 4 });
    expect(t.logs.map((l) => l.step)).toEqual([1, 2, 3, 4]);
    expect(t.deviceLosses).toBe(1);
    expect(t.notice).toMatch(/step 4/);
    emit({ type: 'done', step: 10 });
    finish();
    await again;
    expect(t.phase).toBe('done');
  });

  it('offers only unfinished runs for resuming', async () => {
    const info = (step: number) => ({ modelKey: 'k', step, totalSteps: 9, savedAt: 0, options: {} as never, datasetFile: 'x' });
    let ck = info(9);
    const t = new Training(fake({ pendingCheckpoint: async () => ck }));
    await t.checkPending();
    expect(t.pending).toBeNull();
    ck = info(4);
    await t.checkPending();
    expect(t.pending?.step).toBe(4);
  });

  it('a failed run shows the typed error and offers what survived', async () => {
    const engine = fake({
      train: async () => { throw new DatasetError('no data', 'Drop a dataset first.'); },
      pendingCheckpoint: async () => ({ modelKey: 'demo', step: 2, totalSteps: 9, savedAt: 0, options: {} as never, datasetFile: 'x.jsonl' }),
    });
    const t = new Training(engine);
    await t.start(64);
    expect(t.phase).toBe('failed');
    expect(t.error).toMatchObject({ message: 'no data', hint: 'Drop a dataset first.' });
    expect(t.pending?.step).toBe(2);
  });

  it('refuses to start with an invalid form', async () => {
    const train = vi.fn();
    const t = new Training(fake({ train }));
    t.form.targets = [];
    await t.start(64);
    expect(train).not.toHaveBeenCalled();
    expect(t.formErrors.targets).toBeDefined();
  });
});

describe('Studio resume after reload', () => {
  it('loads the checkpoint\'s model from the cache, then resumes', async () => {
    const calls: string[] = [];
    const engine = fake({
      capabilities: async () => ({}) as never,
      selfTest: async () => ({ ok: true, kernel: 'rmsnorm', maxAbsError: 0, ms: 1 }),
      listCachedModels: async () => [{ key: 'k1', name: 'demo', revision: null, quant: 'nf4', form: { storage: 'f16', doubleQuant: false }, bytes: 5, savedAt: 1 }],
      storage: async () => ({ usage: 5, quota: 100, persisted: true }),
      pendingCheckpoint: async () => ({ modelKey: 'k1', step: 7, totalSteps: 20, savedAt: 0, options: { seqLen: 64 } as never, datasetFile: 'd.jsonl', template: 'alpaca' }),
      loadModel: async (src) => {
        calls.push(`load ${JSON.stringify(src)}`);
        return { key: 'k1', name: 'demo', arch: 'llama', params: 1, vocabSize: 1, layers: 1, hiddenSize: 1, quant: 'nf4', form: { storage: 'f16', doubleQuant: false }, hasChatTemplate: false, fromCache: true };
      },
      resumeTraining: async (on) => {
        calls.push('resume');
        for (let s = 1; s <= 7; s++) on({ type: 'step', log: log(s, 2), totalSteps: 20, gpuBytes: {} }); // replayed history
        on({ type: 'step', log: log(8, 1), totalSteps: 20, gpuBytes: {} });
        on({ type: 'done', step: 20 });
      },
    });
    const s = new Studio(engine);
    expect(s.ready).toBe(false);
    await s.init();
    expect(s.ready).toBe(true);
    expect(s.training.pending?.step).toBe(7);
    await s.resumePending();
    expect(calls).toEqual(['load {"kind":"cached","key":"k1"}', 'resume']);
    expect(s.models.info?.fromCache).toBe(true);
    expect(s.training.logs.map((l) => l.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(s.training.phase).toBe('done');
    // The run's sequence length and template are back, and the chat frames prompts with them.
    expect(s.dataset.seqLen).toBe(64);
    expect(s.dataset.template).toBe('alpaca');
    expect(s.dataset.summary).toBeUndefined();
    expect(s.chatTemplate).toBe('alpaca');
  });
});

describe('Studio guards against leaving mid-work', () => {
  it('asks before unloading while a run trains or pauses (checkpoint writes) or a model loads, not otherwise', async () => {
    let emit: (e: TrainEvent) => void = () => {};
    let finish: () => void = () => {};
    let loaded: () => void = () => {};
    const s = new Studio(fake({
      train: (_o, on) => new Promise<void>((res) => { emit = on; finish = res; }),
      pause: async () => {},
      loadModel: () => new Promise((res) => { loaded = () => res({ key: 'k', name: 'demo', arch: 'llama', params: 1, vocabSize: 1, layers: 1, hiddenSize: 1, quant: 'nf4', form: { storage: 'f16', doubleQuant: false }, hasChatTemplate: false, fromCache: false }); }),
      storage: async () => ({ usage: 0, quota: 1, persisted: true }),
      listCachedModels: async () => [],
    }));
    expect(s.unloadWouldLoseWork).toBe(false);
    const loading = s.loadModel({ kind: 'demo' }, 'demo');
    expect(s.unloadWouldLoseWork).toBe(true); // downloading, quantizing, caching
    loaded();
    await loading;
    expect(s.unloadWouldLoseWork).toBe(false);
    const run = s.training.start(64, 'seed');
    emit({ type: 'step', log: log(1, 3), totalSteps: 9, gpuBytes: {} });
    expect(s.unloadWouldLoseWork).toBe(true);
    const pausing = s.training.pause();
    expect(s.training.phase).toBe('pausing');
    expect(s.unloadWouldLoseWork).toBe(true); // the checkpoint at pause is being written
    await pausing;
    emit({ type: 'paused', step: 1 });
    finish();
    await run;
    expect(s.training.phase).toBe('paused');
    expect(s.unloadWouldLoseWork).toBe(false); // saved: a reload resumes from here
    expect(s.chatTemplate).toBe('seed');
  });
});

describe('Models', () => {
  it('tracks per-file download progress and quantization', async () => {
    const m = new Models(fake({
      loadModel: async (_s, _q, on) => {
        on({ phase: 'download', file: 'model.safetensors', loaded: 10, total: 100, bytesPerSecond: 5 });
        on({ phase: 'download', file: 'model.safetensors', loaded: 100, total: 100, bytesPerSecond: 5 });
        on({ phase: 'download', file: 'tokenizer.json', loaded: 1, total: 1, bytesPerSecond: 1 });
        on({ phase: 'quantize', tensor: 'model.layers.0.self_attn.q_proj.weight', done: 1, total: 14 });
        return { key: 'k', name: 'x', arch: 'llama', params: 1, vocabSize: 1, layers: 1, hiddenSize: 1, quant: 'nf4', form: { storage: 'f16', doubleQuant: false }, hasChatTemplate: false, fromCache: false };
      },
      listCachedModels: async () => [],
      storage: async () => ({ usage: 0, quota: 1, persisted: true }),
    }));
    await m.load({ kind: 'demo' }, 'demo');
    expect(m.phase).toBe('ready');
    expect(m.files.map((f) => [f.file, f.loaded])).toEqual([['model.safetensors', 100], ['tokenizer.json', 1]]);
    expect(m.quantize).toMatchObject({ done: 1, total: 14 });
  });
  it('builds the hub source with trimmed id and token', () => {
    const m = new Models(fake({}));
    m.hubId = ' org/model ';
    m.token = 'hf_abc';
    expect(m.hubSource()).toEqual({ kind: 'hub', id: 'org/model', token: 'hf_abc' });
  });
});

describe('Studio fit check before a model download', () => {
  it('a model that does not fit is refused with its plan; "Use these settings" fills the form and loads it in the suggested form', async () => {
    const { requireFit, checkFit, fitSettings } = await import('../app/fit.ts');
    const { parseModelConfig } = await import('../model/config.ts');
    const { SHAPES } = await import('../model/shapes.ts');
    const limits = { maxBufferSize: 2 ** 31, maxStorageBufferBindingSize: 2 ** 31 };
    // The site's context for an 8B: loaded in the run's form (its storage for the tables, its double
    // quantization), 4096 RoPE rows.
    const ctx = { dims: parseModelConfig(SHAPES['llama-3-8b']), quant: 'nf4' as const, doubleQuantKnob: true, maxPositions: 4096 };
    const loads: (TrainOptionsLike | undefined)[] = [];
    const forms: unknown[] = [];
    type TrainOptionsLike = Parameters<EngineApi['estimate']>[0];
    const s = new Studio(fake({
      // The engine's check, on the real plan: refused (before any download) unless it fits.
      loadModel: async (_src, _q, _on, fit, form) => {
        loads.push(fit?.options);
        forms.push(form);
        if (fit) requireFit('llama-3-8b', ctx, fitSettings(fit.options), { budget: fit.budget ?? Infinity, limits });
        return { key: 'k', name: 'llama-3-8b', arch: 'llama', params: 8e9, vocabSize: 128256, layers: 32, hiddenSize: 4096, quant: 'nf4', form: { storage: form!.storage!, doubleQuant: form!.doubleQuant! }, hasChatTemplate: false, fromCache: false };
      },
      listCachedModels: async () => [],
      storage: async () => ({ usage: 0, quota: 1, persisted: true }),
    }));
    const asked = fitSettings({ ...s.training.form, seqLen: s.dataset.seqLen });
    expect(asked).toMatchObject({ storage: 'f16', doubleQuant: false }); // the site's defaults, as the CLI's and bitsandbytes'
    // Just what double quantization saves: the cheapest change, and one that changes the loaded form.
    const budget = checkFit(ctx, { ...asked, doubleQuant: true }, { budget: Infinity, limits }).peakBytes;
    s.models.budgetGiB = budget / 1024 ** 3;
    await s.loadModel({ kind: 'hub', id: 'meta-llama/Meta-Llama-3-8B' }, 'llama-3-8b');
    expect(s.models.phase).toBe('failed');
    expect(s.models.error?.code).toBe('model-too-large');
    const t = s.models.tooLarge!;
    expect(t.byCategory).toEqual(checkFit(ctx, asked, { budget, limits }).byCategory);
    expect(t.budget).toBe(budget);
    expect(t.suggestion!.peakBytes).toBeLessThanOrEqual(budget);
    expect(t.suggestion!.changes).toEqual(['double quantization on']);
    expect(s.training.form.doubleQuant).toBe(false);
    expect(forms[0]).toEqual({ storage: 'f16', doubleQuant: false });

    await s.loadWithSuggestion();
    expect(s.models.phase).toBe('ready');
    expect(s.models.tooLarge).toBeUndefined();
    const applied = t.suggestion!.settings;
    expect(s.training.form).toMatchObject({ storage: applied.storage, checkpointing: applied.checkpointing, batch: applied.batch, gradAccum: applied.gradAccum, rank: applied.rank, targets: applied.targets });
    expect(s.dataset.seqLen).toBe(applied.seqLen);
    expect(loads).toHaveLength(2);
    expect(fitSettings(loads[1]!)).toEqual(applied);
    expect(forms[1]).toEqual({ storage: 'f16', doubleQuant: true }); // loaded (and cached) double-quantized
    expect(s.models.info?.form).toEqual({ storage: 'f16', doubleQuant: true });
    expect(s.formChange).toBeUndefined();
    s.training.form.storage = 'f32';
    expect(s.formChange).toEqual({ storage: 'f32', doubleQuant: true });
    s.training.form.storage = 'f16';
    // With no budget only the per-buffer limits are checked: the form's own settings load.
    s.models.budgetGiB = 0;
    s.training.resetForm();
    await s.loadModel({ kind: 'hub', id: 'meta-llama/Meta-Llama-3-8B' }, 'llama-3-8b');
    expect(loads.at(-1)).toMatchObject({ checkpointing: false });
    expect(s.models.phase).toBe('ready');
  });
});

describe('Studio weight form', () => {
  it('a cached entry loads in its own form, which the form takes; another form loads the model again from its origin', async () => {
    const calls: unknown[] = [];
    const s = new Studio(fake({
      loadModel: async (src, _q, _on, _fit, form) => {
        calls.push([src, form]);
        const cached = src.kind === 'cached';
        return {
          key: cached ? src.key : 'demo:nf4#f16+dq', name: 'demo', arch: 'llama', params: 1, vocabSize: 1, layers: 1, hiddenSize: 1, quant: 'nf4',
          form: cached ? { storage: 'f32', doubleQuant: false } : { storage: form!.storage!, doubleQuant: form!.doubleQuant! },
          hasChatTemplate: false, fromCache: cached, ...(cached ? { origin: { kind: 'demo' as const } } : {}),
        };
      },
      listCachedModels: async () => [],
      storage: async () => ({ usage: 0, quota: 1, persisted: true }),
    }));
    expect(s.training.form).toMatchObject({ storage: 'f16', doubleQuant: false });
    await s.loadModel({ kind: 'cached', key: 'demo:nf4' }, 'demo');
    expect(calls[0]).toEqual([{ kind: 'cached', key: 'demo:nf4' }, undefined]); // no form asked of a cached entry
    expect(s.training.form).toMatchObject({ storage: 'f32', doubleQuant: false });
    expect(s.formChange).toBeUndefined();
    s.training.form.storage = 'f16';
    s.training.form.doubleQuant = true;
    expect(s.formChange).toEqual({ storage: 'f16', doubleQuant: true });
    expect(s.reloadSource).toEqual({ kind: 'demo' });
    await s.reloadInForm();
    expect(calls[1]).toEqual([{ kind: 'demo' }, { storage: 'f16', doubleQuant: true }]);
    expect(s.models.info?.form).toEqual({ storage: 'f16', doubleQuant: true });
    expect(s.formChange).toBeUndefined();
  });
});

describe('Dataset', () => {
  it('refuses a pickle without losing the prepared dataset', async () => {
    const prepareDataset = vi.fn(async () => ({ file: 'a.jsonl' }) as never);
    const d = new Dataset(fake({ prepareDataset }));
    await d.use(new File(['{}'], 'a.jsonl'));
    expect(d.phase).toBe('ready');
    await d.use(new File([new Uint8Array([0x80, 2])], 'pytorch_model.bin'));
    expect(d.error?.message).toMatch(/pytorch_model\.bin.*arbitrary code/);
    expect(d.summary).toBeDefined();
    expect(prepareDataset).toHaveBeenCalledTimes(1);
  });
  it('offers to skip listed bad rows, then retries with skipping on', async () => {
    const problems = [{ kind: 'json-syntax', file: 'b.jsonl', line: 4, row: 4, message: 'b.jsonl line 4: not JSON' }];
    const prepareDataset = vi.fn(async (_f: File, o: { skipBadRows: boolean }) => {
      if (!o.skipBadRows) throw new DatasetError('b.jsonl: 1 row cannot be used', 'Fix or skip.', { file: 'b.jsonl', line: 4, problems });
      return { file: 'b.jsonl', problems } as never;
    });
    const d = new Dataset(fake({ prepareDataset: prepareDataset as never }));
    await d.use(new File(['x'], 'b.jsonl'));
    expect(d.phase).toBe('failed');
    expect(d.error?.where).toBe('b.jsonl, line 4');
    expect(d.canSkip).toBe(true);
    await d.skipAndRetry();
    expect(d.phase).toBe('ready');
    expect(d.summary?.problems).toHaveLength(1);
  });
});

describe('Chat', () => {
  it('streams base then fine-tuned replies for one prompt, framed as trained', async () => {
    const seen: { prompt: string; adapter: boolean; use?: string | null }[] = [];
    let using: string | null | undefined;
    const c = new Chat(fake({
      useAdapter: async (id) => void (using = id),
      generate: async (prompt, o, on) => {
        seen.push({ prompt, adapter: o.adapter, ...(o.adapter ? { use: using } : {}) });
        const reply = o.adapter ? 'about 125 g' : 'hmm';
        for (const ch of reply) on(ch);
        return reply;
      },
    }));
    await c.send('1 cup of flour?', 'seed', true);
    expect(seen).toEqual([
      { prompt: '### Instruction:\n1 cup of flour?\n### Response:\n', adapter: false },
      { prompt: '### Instruction:\n1 cup of flour?\n### Response:\n', adapter: true, use: null },
    ]);
    expect(c.turns[0].answers).toEqual([
      { pick: 'base', label: 'base', text: 'hmm', streaming: false },
      { pick: 'current', label: 'current', text: 'about 125 g', streaming: false },
    ]);
    expect(c.phase).toBe('idle');
  });

  it('compares two library adapters, switching the engine to each before it answers', async () => {
    const seen: string[] = [];
    let using: string | null = null;
    const c = new Chat(fake({
      useAdapter: async (id) => void (using = id),
      generate: async (_p, o) => {
        const who = o.adapter ? String(using) : 'base';
        seen.push(who);
        return `from ${who}`;
      },
    }));
    c.primary = 'id-a';
    c.against = 'id-b';
    await c.send('hi', undefined, true, (p) => p.toUpperCase());
    expect(seen).toEqual(['id-b', 'id-a']);
    expect(c.turns[0].answers.map((a) => [a.label, a.text])).toEqual([['ID-B', 'from id-b'], ['ID-A', 'from id-a']]);
    c.forget('id-b');
    expect(c.against).toBe('base');
  });

  it('the sides: no current adapter answers with the base once; "none" compares with nobody', () => {
    expect(sidesOf('current', 'base', false)).toEqual(['base']);
    expect(sidesOf('current', 'base', true)).toEqual(['base', 'current']);
    expect(sidesOf('id1', 'none', true)).toEqual(['id1']);
    expect(sidesOf('base', 'current', true)).toEqual(['current', 'base']);
  });
});

describe('Library', () => {
  const entry = (id: string, name: string): LibraryEntry => ({ id, modelKey: 'k', name, savedAt: 1, origin: 'trained', bytes: 10, rank: 8, targets: ['q_proj'], record: null });

  it('lists, renames and deletes through the engine; a failed action shows its error and keeps the list', async () => {
    let entries = [entry('a', 'first'), entry('b', 'second')];
    const lib = new Library(fake({
      listAdapters: async () => ({ entries, current: 'a' }),
      renameAdapter: async (id, name) => ({ ...entries.find((e) => e.id === id)!, name }),
      deleteAdapter: async (id) => {
        if (id === 'x') throw new Error('No adapter "x" in the library.');
        entries = entries.filter((e) => e.id !== id);
      },
    }));
    await lib.refresh();
    expect(lib.phase).toBe('ready');
    expect(lib.current).toBe('a');
    expect(await lib.rename('b', 'renamed')).toBe(true);
    expect(lib.entries.map((e) => e.name)).toEqual(['first', 'renamed']);
    expect(await lib.remove('a')).toBe(true);
    expect(lib.entries.map((e) => e.id)).toEqual(['b']);
    expect(lib.current).toBeNull();
    expect(await lib.remove('x')).toBe(false);
    expect(lib.error?.message).toContain('No adapter "x"');
    expect(lib.entries.map((e) => e.id)).toEqual(['b']);
    expect(lib.busy).toEqual([]);
  });
});
