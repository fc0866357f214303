import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { downsample, extent, linePath, linearScale, linearTicks, logTicks, niceTicks, smooth, type Tick } from './chart.ts';

describe('chart geometry', () => {
  it('ticks are round numbers covering the range', () => {
    expect(niceTicks(0, 10, 5)).toEqual([0, 2, 4, 6, 8, 10]);
    const t = niceTicks(2.31, 10.62, 4);
    expect(t[0]).toBeLessThanOrEqual(2.31);
    expect(t[t.length - 1]).toBeGreaterThanOrEqual(10.62);
    expect(t).toEqual([0, 5, 10, 15]); // a step of 2 would need 5 ticks; 5 is the next round step
    expect(niceTicks(3, 3).length).toBeGreaterThan(1); // a flat line still gets an axis
  });
  it('maps the domain onto the range, inverted y included', () => {
    const sy = linearScale([0, 10], [100, 0]);
    expect(sy(0)).toBe(100);
    expect(sy(10)).toBe(0);
    expect(sy(2.5)).toBe(75);
  });
  it('paths skip gaps', () => {
    const id = (v: number) => v;
    expect(linePath([{ x: 0, y: 1 }, { x: 1, y: 2 }, { x: 2, y: NaN }, { x: 3, y: 4 }], id, id)).toBe('M0.0,1.0L1.0,2.0M3.0,4.0');
  });
  it('downsampling keeps the spike and the last point', () => {
    const pts = Array.from({ length: 10_000 }, (_, i) => ({ x: i, y: i === 4321 ? 99 : 1 }));
    const d = downsample(pts, 300);
    expect(d.length).toBeLessThanOrEqual(301);
    expect(d.some((p) => p.y === 99)).toBe(true);
    expect(d[d.length - 1].x).toBe(9999);
    for (let i = 1; i < d.length; i++) expect(d[i].x).toBeGreaterThan(d[i - 1].x);
  });
  it('extent pads and smoothing is debiased (starts at the first value)', () => {
    const [lo, hi] = extent([[{ x: 0, y: 1 }, { x: 1, y: 3 }]]);
    expect(lo).toBeLessThan(1);
    expect(hi).toBeGreaterThan(3);
    const s = smooth([{ x: 0, y: 4 }, { x: 1, y: 2 }], 0.9);
    expect(s[0].y).toBeCloseTo(4);
    expect(s[1].y).toBeGreaterThan(2);
    expect(s[1].y).toBeLessThan(4);
  });
});

/** What every axis must give: at least two ticks, inside the domain, increasing, with distinct,
 *  short labels that read back as the values they stand for. */
function expectReadable(ticks: Tick[], lo: number, hi: number, value: (at: number) => number = (at) => at): void {
  const where = `domain [${lo}, ${hi}]: ${JSON.stringify(ticks)}`;
  expect(ticks.length, where).toBeGreaterThanOrEqual(2);
  expect(new Set(ticks.map((t) => t.label)).size, where).toBe(ticks.length);
  const span = hi - lo;
  for (let i = 0; i < ticks.length; i++) {
    const { at, label } = ticks[i];
    expect(Number.isFinite(at), where).toBe(true);
    expect(at, where).toBeGreaterThanOrEqual(lo - span * 1e-9);
    expect(at, where).toBeLessThanOrEqual(hi + span * 1e-9);
    if (i > 0) expect(at, where).toBeGreaterThan(ticks[i - 1].at);
    expect(label, where).not.toMatch(/NaN|Infinity|^-0(\.0*)?$/);
    expect(label.length, where).toBeLessThanOrEqual(14);
    // The label is the tick's value, to the digits shown.
    const v = value(at);
    expect(Math.abs(Number(label) - v), where).toBeLessThanOrEqual(Math.abs(v) * 1e-9 + (value(ticks[ticks.length - 1].at) - value(ticks[0].at)) * 1e-6);
  }
}

describe('axis ticks are distinct and readable at any range', () => {
  it('the loss chart that read "10.4" four times', () => {
    const series = [10.3601, 10.3604, 10.3602, 10.3603].map((y, x) => ({ x, y }));
    const [lo, hi] = extent([series]);
    const t = linearTicks(lo, hi, 5);
    expect(t.map((x) => x.label)).toEqual(['10.3601', '10.3602', '10.3603', '10.3604']);
    expectReadable(t, lo, hi);
  });
  it('a flat series, huge and tiny ranges, and no NaN', () => {
    for (const ys of [[10.4, 10.4], [0, 0], [-3, -3], [1e-12, 1e-12], [0, 1e12], [-1e15, 1e15], [1e-9, 2e-9], [1e9, 1e9 + 1], [123456789.5, 123456789.7]]) {
      const [lo, hi] = extent([ys.map((y, x) => ({ x, y }))]);
      expectReadable(linearTicks(lo, hi, 5), lo, hi);
    }
    expect(linearTicks(NaN, 1)).toEqual([]);
    expect(niceTicks(0, Infinity)).toEqual([]);
    expect(extent([[{ x: 0, y: NaN }, { x: 1, y: 2 }, { x: 2, y: Infinity }]]).every(Number.isFinite)).toBe(true);
  });
  it('a domain too narrow for doubles ends, it does not loop', () => {
    expect(niceTicks(1e17, 1e17 + 1).length).toBeLessThanOrEqual(24);
  });
  it('optimizer steps stay whole numbers', () => {
    expect(linearTicks(0, 1, 6, 1).map((t) => t.label)).toEqual(['0', '1']);
    expect(linearTicks(0, 30, 6, 1).map((t) => t.label)).toEqual(['0', '5', '10', '15', '20', '25', '30']);
  });
  it('any series, any magnitude (property)', () => {
    fc.assert(
      fc.property(fc.double({ min: -1e9, max: 1e9, noNaN: true }), fc.double({ min: -10, max: 12, noNaN: true }), fc.integer({ min: 3, max: 8 }), (center, logSpan, count) => {
        const [lo, hi] = extent([[{ x: 0, y: center }, { x: 1, y: center + 10 ** logSpan }]]);
        expectReadable(linearTicks(lo, hi, count), lo, hi);
      }),
      { numRuns: 1000, seed: 7 },
    );
  });
  it('log axes: powers of ten, 1-2-5 multiples, or round values within a decade (property)', () => {
    expect(logTicks(-3, 1).map((t) => t.label)).toEqual(['0.001', '0.01', '0.1', '1', '10']);
    expect(logTicks(0, 1).map((t) => t.label)).toEqual(['1', '2', '5', '10']);
    expectReadable(logTicks(-12, 12, 5), -12, 12, (at) => 10 ** at);
    fc.assert(
      fc.property(fc.double({ min: -6, max: 3, noNaN: true }), fc.double({ min: -6, max: 1, noNaN: true }), (a, logSpan) => {
        // A loss between 1e-6 and 1e4, seen on the log axis the chart draws.
        const [lo, hi] = extent([[{ x: 0, y: a }, { x: 1, y: a + 10 ** logSpan }]]);
        expectReadable(logTicks(lo, hi, 5), lo, hi, (at) => 10 ** at);
      }),
      { numRuns: 1000, seed: 11 },
    );
  });
});
