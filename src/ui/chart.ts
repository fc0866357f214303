// Geometry for the training chart, kept out of the component so it can be tested: axis ranges
// with round tick values, polyline paths, and min/max downsampling so a long run still draws every
// spike (W&B keeps ~1,500 points; averaging would hide exactly the spikes people look for).

export interface Point {
  x: number;
  y: number;
}

/** The smallest of 1, 2 or 5 times a power of ten that is at least `raw` (> 0). */
function niceStep(raw: number): number {
  const mag = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw * (1 - 1e-12)) ?? 10 * mag;
}

/** Decimal exponent of a nice step (2e-4 → -4, 50 → 1): the last digit its multiples use. */
function stepExponent(step: number): number {
  return Math.floor(Math.log10(step) + 1e-9);
}

/** Round tick values covering [lo, hi]: steps of 1, 2 or 5 times a power of ten, at least minStep
 *  (1 keeps an axis of optimizer steps on whole numbers). Each tick is k · step computed from its
 *  index, not by adding steps, and rounded to the step's last digit, so no error accumulates. */
export function niceTicks(lo: number, hi: number, count = 5, minStep = 0): number[] {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [];
  if (lo > hi) [lo, hi] = [hi, lo];
  if (hi === lo) {
    const pad = Math.abs(lo) * 0.1 || 1;
    lo -= pad;
    hi += pad;
  }
  const step = Math.max(niceStep((hi - lo) / Math.max(1, count)), minStep);
  const decimals = Math.min(100, Math.max(0, -stepExponent(step)));
  const k0 = Math.floor(lo / step), k1 = Math.ceil(hi / step);
  const ticks: number[] = [];
  // k1 - k0 is about count + 2 whenever step is above the spacing of doubles near lo and hi; the
  // bound keeps a degenerate domain (1e17 to 1e17 + 1) from looping for ever.
  for (let k = k0; k <= k1 && ticks.length <= 4 * count + 4; k++) ticks.push(Number((k * step).toFixed(decimals)) + 0); // + 0: no -0
  return [...new Set(ticks)];
}

export interface Tick {
  /** Position on the axis, in the axis's units (log10 of the value on a log axis). */
  at: number;
  label: string;
}

/**
 * Labels for ticks spaced `step` apart: as many decimals as the step needs and no more (10.3601,
 * 10.3602 where toPrecision(3) gave "10.4" four times), so labels differ wherever ticks do. Values
 * too large or too small to read in fixed notation get exponents with the digits the step needs.
 */
export function tickLabels(values: readonly number[], step: number): string[] {
  const e = stepExponent(step);
  const fixed = values.map((v) => v.toFixed(Math.min(100, Math.max(0, -e))));
  if (fixed.every((s) => s.length <= 9)) return fixed;
  const top = Math.max(...values.map((v) => (v === 0 ? -Infinity : Math.floor(Math.log10(Math.abs(v))))));
  const digits = Math.min(100, Math.max(0, top - e));
  return values.map((v) => v.toExponential(digits));
}

/** Ticks inside [lo, hi] on a linear axis, labelled. */
export function linearTicks(lo: number, hi: number, count = 5, minStep = 0): Tick[] {
  const all = niceTicks(lo, hi, count, minStep);
  const inside = all.filter((t) => t >= lo && t <= hi);
  const step = all.length > 1 ? all[1] - all[0] : 1;
  const labels = tickLabels(inside, step);
  return inside.map((at, i) => ({ at, label: labels[i] }));
}

/**
 * Ticks for a log axis whose domain [lo, hi] is in log10 units. Over several decades: the powers of
 * ten (every n-th when there are many), or 1, 2 and 5 times them over one or two decades. Within
 * less than that, round values of the linear range, placed at their logarithms.
 */
export function logTicks(lo: number, hi: number, count = 5): Tick[] {
  if (!Number.isFinite(lo) || !Number.isFinite(hi) || hi <= lo) return [];
  // Exact decimal values ("2e-3"), so that String() prints them shortly and never as 0.0020000000000000005.
  const at = (m: number, k: number) => Number(`${m}e${k}`);
  const label = (v: number) => (v >= 1e-4 && v < 1e6 ? String(v) : v.toExponential());
  const ks: number[] = [];
  for (let k = Math.ceil(lo - 1e-9); k <= Math.floor(hi + 1e-9); k++) ks.push(k);
  if (ks.length >= 3) {
    const every = Math.ceil(ks.length / count);
    return ks.filter((k) => k % every === 0 || every === 1).map((k) => ({ at: k, label: label(at(1, k)) }));
  }
  const multiples = [...new Set([Math.floor(lo), ...ks, Math.ceil(hi)])].flatMap((k) => [1, 2, 5].map((m) => at(m, k)));
  const inside = multiples.filter((v) => Math.log10(v) >= lo - 1e-12 && Math.log10(v) <= hi + 1e-12);
  if (inside.length >= 3 && inside.length <= 2 * count) return inside.map((v) => ({ at: Math.log10(v), label: label(v) }));
  return linearTicks(10 ** lo, 10 ** hi, count).map((t) => ({ at: Math.log10(t.at), label: t.label }));
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
  // Never narrower than a millionth of the values' size: a loss flat to the last bits of a float has
  // no digits worth a tick, and ticks need a step above the spacing of doubles.
  const pad = Math.max((hi - lo) * 0.05 || Math.abs(hi) * 0.05 || 0.5, Math.abs(hi + lo) * 2.5e-7);
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
