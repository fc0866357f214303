// Will this run fit, and if not, what is the nearest one that does. One function answers both for
// the site's fit meter (the training estimate), the site's model load (refused before any weight is
// downloaded) and `webtune train --budget`: the memory plan (model/plan.ts) of the training run the
// user's settings describe, against the device's per-buffer limits and a memory budget (WebGPU does
// not say how much memory a GPU has, so the budget is the host's or the user's figure).
//
// The search for settings that fit is small and deterministic: every combination of the changes a
// user can make that lower memory (f16 storage, double quantization, checkpointing, smaller batch
// with more accumulation, lower rank, fewer targets, shorter sequences), each with a cost that says
// how much it changes what the user chose. The cheapest combination that fits wins; among equally
// cheap ones, the one that uses the most of the budget (it gives up least), then the first in a
// fixed order.
import { ModelTooLargeError } from '../errors.ts';
import { Plan, type ModelDims } from '../model/plan.ts';
import type { LoraModule } from '../model/lora.ts';
import { parseModelConfig } from '../model/config.ts';
import { SHAPES } from '../model/shapes.ts';
import { expectedWeights } from '../model/weights.ts';
import type { Storage, TrainOptions } from './options.ts';

export { DEFAULT_MEMORY_BUDGET } from './options.ts';

/** The settings a user can change that decide a training run's memory. */
export interface FitSettings {
  storage: Storage;
  /** NF4 absmax double-quantized (the CLI's --double-quant, the site's training form): the form the
   *  base is loaded in, unless the host fixes it (FitContext). */
  doubleQuant: boolean;
  checkpointing: boolean;
  seqLen: number;
  batch: number;
  gradAccum: number;
  rank: number;
  targets: LoraModule[];
}

/** What the host fixes: the model, its quantization, how its tables are stored, which knobs exist. */
export interface FitContext {
  dims: ModelDims;
  quant: 'nf4' | 'none';
  /** Storage of the embedding and an untied head when the host fixes it (a loaded base, a cached
   *  entry's form); absent: the tables follow `storage`, the base being loaded in the run's form. */
  tableStorage?: 'f16' | 'f32';
  /** RoPE rows the base is loaded with; absent: the run's sequence length (the CLI). */
  maxPositions?: number;
  /** Double quantization is a setting here (the base is loaded in the run's form); false where the
   *  host fixes it (a loaded base). */
  doubleQuantKnob?: boolean;
}

export interface FitDevice {
  /** Bytes the plan may peak at. */
  budget: number;
  limits: Pick<GPUSupportedLimits, 'maxBufferSize' | 'maxStorageBufferBindingSize'>;
}

export interface FitReport {
  fits: boolean;
  peakBytes: number;
  /** GPU bytes by category once running: weights, lora, optimizer, activations, scratch, ... */
  byCategory: Record<string, number>;
  /** Why it does not fit: over the budget, a buffer over the device's per-buffer limit, or the
   *  sequence longer than the RoPE rows the base holds. */
  over?: 'budget' | 'buffer' | 'positions';
  /** The largest buffer of the plan (named when it is over the per-buffer limit). */
  largest: { name: string; bytes: number };
}

export interface FitSuggestion {
  settings: FitSettings;
  /** The changes from the user's settings, in words ("checkpointing on", "batch 1 × accumulation 8"). */
  changes: string[];
  /** How much they change the user's choice (the search's order). */
  cost: number;
  report: FitReport;
}

/** The fit settings of training options; `doubleQuant` overrides theirs (a loaded base's form). */
export function fitSettings(o: Pick<TrainOptions, 'storage' | 'doubleQuant' | 'checkpointing' | 'seqLen' | 'batch' | 'gradAccum' | 'rank' | 'targets'>, doubleQuant = o.doubleQuant ?? false): FitSettings {
  return {
    storage: o.storage ?? 'f32', doubleQuant, checkpointing: o.checkpointing, seqLen: o.seqLen, batch: o.batch, gradAccum: o.gradAccum,
    rank: o.rank, targets: [...o.targets],
  };
}

/** The training plan these settings describe (LoRA alpha and dropout do not change its bytes). */
export function fitPlan(ctx: FitContext, s: FitSettings, limits: FitDevice['limits']): Plan {
  return new Plan(ctx.dims, {
    batch: s.batch, seqLen: s.seqLen, quant: ctx.quant, doubleQuant: ctx.quant === 'nf4' && s.doubleQuant, storage: s.storage,
    tableStorage: ctx.tableStorage, lora: { rank: s.rank, alpha: 2 * s.rank, dropout: 0, rslora: false, targets: s.targets },
    training: true, checkpointing: s.checkpointing, gradAccum: s.gradAccum, maxPositions: ctx.maxPositions ?? s.seqLen, limits,
  });
}

export function checkFit(ctx: FitContext, s: FitSettings, device: FitDevice): FitReport {
  let plan: Plan;
  try {
    plan = fitPlan(ctx, s, device.limits);
  } catch {
    // Not even one 64-token chunk of logits fits a binding: no setting here changes that.
    return { fits: false, peakBytes: Infinity, byCategory: {}, over: 'buffer', largest: { name: 'logits', bytes: Infinity } };
  }
  const peakBytes = plan.peakBytes();
  const largest = plan.rows.reduce((a, r) => (r.bytes > a.bytes ? { name: r.name, bytes: r.bytes } : a), { name: '', bytes: 0 });
  const over = largest.bytes > device.limits.maxBufferSize ? 'buffer'
    : ctx.maxPositions !== undefined && s.seqLen > ctx.maxPositions ? 'positions'
    : peakBytes > device.budget ? 'budget' : undefined;
  return { fits: over === undefined, peakBytes, byCategory: plan.byCategory(), ...(over ? { over } : {}), largest };
}

interface Knob {
  /** Values in order of how far they move from the user's (the first is the user's own). */
  levels: ((s: FitSettings) => FitSettings)[];
  /** Cost of each level (0 for the first). */
  cost: number[];
  words: ((s: FitSettings) => string)[];
}

// Costs: what the change does to the run. f16 storage and double quantization change numbers in the
// last digits; checkpointing only costs time; a smaller batch with more accumulation keeps the
// effective batch (time, and batch statistics nothing here uses); a lower rank or fewer targets
// changes the adapter; a shorter sequence cuts the user's examples. Each halving costs again.
const COST = { storage: 1, doubleQuant: 1, checkpointing: 2, batch: 2, rank: 4, targets: 4, seqLen: 6 };
const HALVINGS = 3;

function knobs(ctx: FitContext, s: FitSettings): Knob[] {
  const out: Knob[] = [];
  const flag = (on: boolean, cost: number, set: (s: FitSettings) => FitSettings, word: string) => {
    if (!on) out.push({ levels: [(x) => x, set], cost: [0, cost], words: [() => '', () => word] });
  };
  flag(s.storage === 'f16', COST.storage, (x) => ({ ...x, storage: 'f16' }), 'storage f16');
  if (ctx.doubleQuantKnob && ctx.quant === 'nf4') flag(s.doubleQuant, COST.doubleQuant, (x) => ({ ...x, doubleQuant: true }), 'double quantization on');
  flag(s.checkpointing, COST.checkpointing, (x) => ({ ...x, checkpointing: true }), 'checkpointing on');
  const halve = (n: number, floor: number, key: 'batch' | 'rank' | 'seqLen', cost: number, word: (x: FitSettings) => string) => {
    const k: Knob = { levels: [(x) => x], cost: [0], words: [() => ''] };
    for (let h = 1, v = n; h <= HALVINGS && Math.ceil(v / 2) >= floor && v > floor; h++) {
      v = Math.max(floor, Math.ceil(v / 2));
      const value = v, times = Math.round(n / v);
      k.levels.push((x) => ({ ...x, [key]: value, ...(key === 'batch' ? { gradAccum: x.gradAccum * times } : {}) }));
      k.cost.push(cost * h);
      k.words.push(word);
    }
    if (k.levels.length > 1) out.push(k);
  };
  halve(s.batch, 1, 'batch', COST.batch, (x) => `batch ${x.batch} × accumulation ${x.gradAccum}`);
  halve(s.rank, 1, 'rank', COST.rank, (x) => `rank ${x.rank}`);
  if (s.targets.length > 2) {
    const fewer: LoraModule[] = s.targets.includes('q_proj') && s.targets.includes('v_proj') ? ['q_proj', 'v_proj'] : s.targets.slice(0, 2);
    out.push({ levels: [(x) => x, (x) => ({ ...x, targets: fewer })], cost: [0, COST.targets], words: [() => '', () => `targets ${fewer.join(',')}`] });
  }
  halve(s.seqLen, Math.min(s.seqLen, 64), 'seqLen', COST.seqLen, (x) => `sequence length ${x.seqLen}`);
  return out;
}

/** Every combination of changes, cheapest first, in a fixed order within a cost. */
export function candidates(ctx: FitContext, s: FitSettings): { settings: FitSettings; changes: string[]; cost: number }[] {
  const ks = knobs(ctx, s);
  let combos: { settings: FitSettings; picks: number[]; cost: number }[] = [{ settings: s, picks: [], cost: 0 }];
  for (const k of ks) {
    combos = combos.flatMap((c) => k.levels.map((f, i) => ({ settings: f(c.settings), picks: [...c.picks, i], cost: c.cost + k.cost[i] })));
  }
  const out = combos.map((c) => ({
    settings: c.settings, cost: c.cost,
    changes: c.picks.flatMap((i, j) => (i ? [ks[j].words[i](c.settings)] : [])),
  }));
  return out.map((c, i) => ({ c, i })).sort((a, b) => a.c.cost - b.c.cost || a.i - b.i).map(({ c }) => c);
}

/** The nearest settings that fit, or undefined when none of the changes is enough. */
export function nearestFit(ctx: FitContext, s: FitSettings, device: FitDevice): FitSuggestion | undefined {
  const all = candidates(ctx, s);
  // Every change lowers memory, so the costliest candidate (all of them at once) is the smallest
  // run: when it does not fit, nothing does, and the search stops before planning the rest.
  if (!checkFit(ctx, all[all.length - 1].settings, device).fits) return undefined;
  let best: FitSuggestion | undefined;
  for (const c of all) {
    if (best && c.cost > best.cost) break;
    const report = checkFit(ctx, c.settings, device);
    if (report.fits && (!best || report.peakBytes > best.report.peakBytes)) best = { ...c, report };
  }
  return best;
}

/**
 * Throws ModelTooLargeError when the settings do not fit: the plan by category and the nearest
 * settings that fit (`flags` says how the host names them: the CLI's flags or the form's words).
 */
export function requireFit(name: string, ctx: FitContext, s: FitSettings, device: FitDevice, flags?: (s: FitSettings, from: FitSettings) => string): FitReport {
  const report = checkFit(ctx, s, device);
  if (report.fits) return report;
  throw new ModelTooLargeError(name, report, device, nearestFit(ctx, s, device), s, flags);
}

/** The CLI's flags for the settings that differ from `from`. */
export function suggestionFlags(s: FitSettings, from: FitSettings): string {
  const f: string[] = [];
  if (s.storage !== from.storage) f.push(`--storage ${s.storage}`);
  if (s.doubleQuant && !from.doubleQuant) f.push('--double-quant');
  if (s.checkpointing && !from.checkpointing) f.push('--checkpointing');
  if (s.batch !== from.batch) f.push(`--batch ${s.batch} --grad-accum ${s.gradAccum}`);
  if (s.rank !== from.rank) f.push(`--rank ${s.rank}`);
  if (s.targets.join(',') !== from.targets.join(',')) f.push(`--targets ${s.targets.join(',')}`);
  if (s.seqLen !== from.seqLen) f.push(`--seq-len ${s.seqLen}`);
  return f.join(' ');
}

export interface ShapeFit {
  shape: string;
  params: number;
  peakBytes: number;
  byCategory: Record<string, number>;
  fits: boolean;
  over?: FitReport['over'];
  /** When it does not fit: the nearest settings' changes and peak. */
  suggestion?: { changes: string[]; peakBytes: number };
}

/** The fit meter: a training run with these settings, planned for each named shape (src/model/shapes.ts)
 *  as the site loads it (in the run's form: its storage for the tables, its double quantization;
 *  RoPE rows up to `maxPositions`), against the device. */
export function shapeFits(s: FitSettings, device: FitDevice, maxPositions = 4096): ShapeFit[] {
  return Object.entries(SHAPES).map(([shape, json]) => {
    const dims = parseModelConfig(json, shape);
    const ctx: FitContext = { dims, quant: 'nf4', doubleQuantKnob: true, maxPositions: Math.min(dims.maxPositionEmbeddings, maxPositions) };
    const r = checkFit(ctx, s, device);
    const near = r.fits ? undefined : nearestFit(ctx, s, device);
    const params = expectedWeights(dims).reduce((a, w) => a + w.shape.reduce((x, y) => x * y, 1), 0);
    return { shape, params, peakBytes: r.peakBytes, byCategory: r.byCategory, fits: r.fits, ...(r.over ? { over: r.over } : {}), ...(near ? { suggestion: { changes: near.changes, peakBytes: near.report.peakBytes } } : {}) };
  });
}
