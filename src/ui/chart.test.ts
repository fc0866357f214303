import { describe, expect, it } from 'vitest';
import { downsample, extent, linePath, linearScale, niceTicks, smooth } from './chart.ts';

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
