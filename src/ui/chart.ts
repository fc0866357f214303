// Geometry for the training chart, kept out of the component so it can be tested: axis ranges
// with round tick values, polyline paths, and min/max downsampling so a long run still draws every
// spike (W&B keeps ~1,500 points; averaging would hide exactly the spikes people look for).

export interface Point {
  x: number;
  y: number;
}

/** Round tick values covering [lo, hi]: steps of 1, 2 or 5 times a power of ten. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [];
  if (hi === lo) {
    const pad = Math.abs(lo) * 0.1 || 1;
    lo -= pad;
    hi += pad;
  }
  const raw = (hi - lo) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const start = Math.floor(lo / step) * step;
  const ticks: number[] = [];
  for (let v = start; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  if (ticks[ticks.length - 1] < hi) ticks.push(Number((ticks[ticks.length - 1] + step).toPrecision(12)));
  return ticks;
}

export interface Scale {
  (v: number): number;
  domain: [number, number];
}

export function linearScale(domain: [number, number], range: [number, number]): Scale {
  const [d0, d1] = domain, [r0, r1] = range;
  const k = d1 === d0 ? 0 : (r1 - r0) / (d1 - d0);
  const f = ((v: number) => r0 + (v - d0) * k) as Scale;
  f.domain = domain;
  return f;
}

/** An SVG path through the points ("M x,y L x,y ..."), skipping non-finite values with a gap. */
export function linePath(points: readonly Point[], sx: (v: number) => number, sy: (v: number) => number): string {
  let d = '';
  let pen = false;
  for (const p of points) {
    if (!Number.isFinite(p.y) || !Number.isFinite(p.x)) {
      pen = false;
      continue;
    }
    d += `${pen ? 'L' : 'M'}${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`;
    pen = true;
  }
  return d;
}

/** Keep at most ~max points: per bucket, the first, the lowest and the highest, in x order. */
export function downsample(points: readonly Point[], max: number): Point[] {
  if (points.length <= max) return points.slice();
  const buckets = Math.max(1, Math.floor(max / 3));
  const size = points.length / buckets;
  const out: Point[] = [];
  for (let b = 0; b < buckets; b++) {
    const slice = points.slice(Math.floor(b * size), Math.floor((b + 1) * size));
    if (slice.length === 0) continue;
    let lo = slice[0], hi = slice[0];
    for (const p of slice) {
      if (p.y < lo.y) lo = p;
      if (p.y > hi.y) hi = p;
    }
    const keep = new Set([slice[0], lo, hi]);
    out.push(...[...keep].sort((a, b) => a.x - b.x));
  }
  const last = points[points.length - 1];
  if (out[out.length - 1] !== last) out.push(last);
  return out;
}

/** The y range of several series together, padded a little so lines do not touch the frame. */
export function extent(series: readonly (readonly Point[])[]): [number, number] {
  let lo = Infinity, hi = -Infinity;
  for (const s of series) for (const p of s) {
    if (!Number.isFinite(p.y)) continue;
    lo = Math.min(lo, p.y);
    hi = Math.max(hi, p.y);
  }
  if (lo === Infinity) return [0, 1];
  const pad = (hi - lo) * 0.05 || Math.abs(hi) * 0.05 || 0.5;
  return [lo - pad, hi + pad];
}

/** Debiased exponential moving average (as W&B and TensorBoard draw it), drawn over the raw line. */
export function smooth(points: readonly Point[], weight: number): Point[] {
  let avg = 0, n = 0;
  return points.map((p) => {
    avg = avg * weight + (1 - weight) * p.y;
    n++;
    return { x: p.x, y: avg / (1 - weight ** n) };
  });
}
