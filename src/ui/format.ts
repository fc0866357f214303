// Small formatting helpers for numbers the UI shows (bytes, rates, durations, ETAs). Pure, so the
// unit tier can pin them down; components only call them.
import { formatBytes } from '../errors.ts';

export { formatBytes };

export function formatRate(bytesPerSecond: number): string {
  if (!Number.isFinite(bytesPerSecond) || bytesPerSecond <= 0) return '—';
  return `${formatBytes(Math.round(bytesPerSecond))}/s`;
}

/** 75 -> "1m 15s"; 3725 -> "1h 2m"; unknown -> "—" (an honest blank beats a wild guess). */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '—';
  if (seconds > 0 && seconds < 1) return 'under 1s';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

/** Seconds left for a transfer at its current rate, or NaN when the rate is unknown. */
export function transferEta(loaded: number, total: number, bytesPerSecond: number): number {
  if (!(bytesPerSecond > 0) || total <= 0) return NaN;
  return Math.max(0, total - loaded) / bytesPerSecond;
}

/** 1234567 -> "1.23M"; 1234 -> "1,234". For parameter and token counts. */
export function formatCount(n: number): string {
  if (!Number.isFinite(n)) return '—';
  if (Math.abs(n) >= 1e9) return `${(n / 1e9).toFixed(2)}B`;
  if (Math.abs(n) >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  return Math.round(n).toLocaleString('en-US');
}

export function formatLoss(x: number | undefined): string {
  return x === undefined || !Number.isFinite(x) ? '—' : x.toFixed(4);
}

/**
 * ETA for training from the recent step times. The first step is left out on purpose: it pays for
 * shader compilation and pipeline creation, and counting it makes every early ETA far too long.
 * A window of recent steps follows speed changes (a hidden tab, thermal throttling) without
 * jumping on every step. Steps done before a resume are never in the window (reset() on resume).
 */
export class StepClock {
  private times: { step: number; t: number }[] = [];
  constructor(private readonly window = 20) {}

  reset(): void {
    this.times = [];
  }

  /** Record that `step` finished at time `t` (ms). */
  mark(step: number, t: number): void {
    this.times.push({ step, t });
    if (this.times.length > this.window + 1) this.times.shift();
  }

  /** Seconds per step over the window, or NaN until two steps after the first have been seen. */
  secondsPerStep(): number {
    // times[0] is the end of the first step we saw: the compile-heavy one is before it.
    if (this.times.length < 3) return NaN;
    const a = this.times[0], b = this.times[this.times.length - 1];
    const steps = b.step - a.step;
    return steps > 0 ? (b.t - a.t) / 1000 / steps : NaN;
  }

  eta(step: number, totalSteps: number): number {
    const sps = this.secondsPerStep();
    return Number.isFinite(sps) ? sps * Math.max(0, totalSteps - step) : NaN;
  }
}

/** Perplexity from a mean cross-entropy loss in nats: exp(loss), as Transformers' run_clm reports it.
 *  Large values in the thousands are shown whole; overflow or no loss is "—". */
export function formatPerplexity(loss: number | undefined | null): string {
  if (loss === undefined || loss === null || !Number.isFinite(loss)) return '—';
  const p = Math.exp(loss);
  if (!Number.isFinite(p)) return '—';
  return p >= 1000 ? Math.round(p).toLocaleString('en-US') : p.toFixed(2);
}
