import { describe, expect, it } from 'vitest';
import { StepClock, formatCount, formatDuration, formatPerplexity, formatRate, transferEta } from './format.ts';

describe('format', () => {
  it('durations read as people say them', () => {
    expect(formatDuration(0)).toBe('0s');
    expect(formatDuration(0.03)).toBe('under 1s');
    expect(formatDuration(75)).toBe('1m 15s');
    expect(formatDuration(3725)).toBe('1h 2m');
    expect(formatDuration(NaN)).toBe('—');
  });
  it('perplexity is exp(loss): ln 32000 gives 32,000, a loss of 1 gives e', () => {
    expect(formatPerplexity(Math.log(32000))).toBe('32,000');
    expect(formatPerplexity(1)).toBe('2.72');
    expect(formatPerplexity(0)).toBe('1.00');
    expect(formatPerplexity(1000)).toBe('—'); // exp overflows
    expect(formatPerplexity(undefined)).toBe('—');
    expect(formatPerplexity(null)).toBe('—');
  });
  it('rates and counts', () => {
    expect(formatRate(2 * 1024 * 1024)).toBe('2.00 MiB/s');
    expect(formatRate(0)).toBe('—');
    expect(formatCount(1_234_567)).toBe('1.23M');
    expect(formatCount(1234)).toBe('1,234');
  });
  it('transfer ETA is bytes left over the rate, unknown without a rate', () => {
    expect(transferEta(25, 125, 10)).toBe(10);
    expect(transferEta(25, 125, 0)).toBeNaN();
  });
});

describe('StepClock', () => {
  it('ignores the slow first (compiling) step and measures the rest', () => {
    const c = new StepClock();
    c.mark(1, 10_000); // step 1 took 10 s of shader compilation
    expect(c.eta(1, 100)).toBeNaN();
    c.mark(2, 10_500);
    expect(c.eta(2, 100)).toBeNaN(); // one interval is not a rate yet
    c.mark(3, 11_000);
    expect(c.secondsPerStep()).toBeCloseTo(0.5);
    expect(c.eta(3, 100)).toBeCloseTo(48.5);
  });
  it('follows a speed change through its window and forgets on reset', () => {
    const c = new StepClock(4);
    for (let s = 1; s <= 10; s++) c.mark(s, s * 1000);
    for (let s = 11; s <= 15; s++) c.mark(s, 10_000 + (s - 10) * 3000);
    expect(c.secondsPerStep()).toBeCloseTo(3);
    c.reset();
    expect(c.secondsPerStep()).toBeNaN();
  });
});
