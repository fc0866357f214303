// Packed-row layouts for attention tests: each row of T tokens holds examples of the given lengths
// back to back, then padding. Positions restart at 0 at each example; padding gets position 0, as
// makeBatches pads (so a padding token sees only itself).

export function packedPositions(rows: readonly (readonly number[])[], T: number): Uint32Array {
  const pos = new Uint32Array(rows.length * T);
  rows.forEach((lengths, b) => {
    let o = 0;
    for (const n of lengths) for (let k = 0; k < n; k++) pos[b * T + o++] = k;
    if (o > T) throw new RangeError(`packedPositions: row ${b} holds ${o} tokens, more than T=${T}`);
  });
  return pos;
}

/** Where each example sits: [row, first token, length], padding excluded. */
export function exampleSpans(rows: readonly (readonly number[])[]): [number, number, number][] {
  const out: [number, number, number][] = [];
  rows.forEach((lengths, b) => {
    let o = 0;
    for (const n of lengths) {
      out.push([b, o, n]);
      o += n;
    }
  });
  return out;
}

/** Rows t0 .. t0+n-1 of row b of a (B, T, heads, D) array, as a (1, n, heads, D) array. */
export function sliceTokens(x: Float32Array, T: number, rowFloats: number, b: number, t0: number, n: number): Float32Array {
  return x.slice((b * T + t0) * rowFloats, (b * T + t0 + n) * rowFloats);
}
