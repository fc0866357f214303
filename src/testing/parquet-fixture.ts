// Test helper: writes a minimal, valid Parquet file (one row group, REQUIRED UTF-8 string columns,
// PLAIN encoding, no compression) so reader tests need no Parquet writer dependency and no binary
// fixture of unknown origin. Thrift compact protocol, as the Parquet footer uses.

type TValue = { t: 'i32' | 'i64'; v: number } | { t: 'bin'; v: Uint8Array | string } | { t: 'list'; elem: 'i32' | 'bin' | 'struct'; v: TValue[] } | { t: 'struct'; v: [number, TValue][] };

const TYPE = { i32: 5, i64: 6, bin: 8, list: 9, struct: 12 } as const;

class Out {
  bytes: number[] = [];
  varint(n: bigint) {
    while (n >= 0x80n) {
      this.bytes.push(Number(n & 0x7fn) | 0x80);
      n >>= 7n;
    }
    this.bytes.push(Number(n));
  }
  zigzag(n: number) {
    const b = BigInt(n);
    this.varint(b >= 0n ? b << 1n : ((-b) << 1n) - 1n);
  }
  raw(b: Uint8Array | number[]) {
    for (const x of b) this.bytes.push(x);
  }
  value(x: TValue) {
    switch (x.t) {
      case 'i32':
      case 'i64':
        return this.zigzag(x.v);
      case 'bin': {
        const b = typeof x.v === 'string' ? new TextEncoder().encode(x.v) : x.v;
        this.varint(BigInt(b.length));
        return this.raw(b);
      }
      case 'list': {
        const et = TYPE[x.elem];
        if (x.v.length < 15) this.bytes.push((x.v.length << 4) | et);
        else {
          this.bytes.push(0xf0 | et);
          this.varint(BigInt(x.v.length));
        }
        for (const e of x.v) this.value(e);
        return;
      }
      case 'struct': {
        let last = 0;
        for (const [id, fv] of x.v) {
          const delta = id - last;
          if (delta <= 0 || delta > 15) throw new Error('field ids must increase by 1..15');
          this.bytes.push((delta << 4) | TYPE[fv.t]);
          this.value(fv);
          last = id;
        }
        this.bytes.push(0);
      }
    }
  }
}

const i32 = (v: number): TValue => ({ t: 'i32', v });
const i64 = (v: number): TValue => ({ t: 'i64', v });
const bin = (v: string): TValue => ({ t: 'bin', v });

/** A Parquet file with the given string columns. */
export function writeParquet(columns: string[], rows: string[][]): Uint8Array<ArrayBuffer> {
  const file = new Out();
  file.raw([0x50, 0x41, 0x52, 0x31]);
  const chunks: TValue[] = [];
  columns.forEach((name, c) => {
    const data = new Out();
    for (const r of rows) {
      const b = new TextEncoder().encode(r[c]);
      data.raw([b.length & 0xff, (b.length >> 8) & 0xff, (b.length >> 16) & 0xff, b.length >>> 24]);
      data.raw(b);
    }
    const header = new Out();
    header.value({
      t: 'struct',
      v: [
        [1, i32(0)], // DATA_PAGE
        [2, i32(data.bytes.length)],
        [3, i32(data.bytes.length)],
        [5, { t: 'struct', v: [[1, i32(rows.length)], [2, i32(0)], [3, i32(3)], [4, i32(3)]] }],
      ],
    });
    const offset = file.bytes.length;
    file.raw(header.bytes);
    file.raw(data.bytes);
    const size = header.bytes.length + data.bytes.length;
    chunks.push({
      t: 'struct',
      v: [
        [2, i64(offset)],
        [
          3,
          {
            t: 'struct',
            v: [
              [1, i32(6)], // BYTE_ARRAY
              [2, { t: 'list', elem: 'i32', v: [i32(0)] }],
              [3, { t: 'list', elem: 'bin', v: [bin(name)] }],
              [4, i32(0)], // UNCOMPRESSED
              [5, i64(rows.length)],
              [6, i64(size)],
              [7, i64(size)],
              [9, i64(offset)],
            ],
          },
        ],
      ],
    });
  });
  const schema: TValue[] = [
    { t: 'struct', v: [[4, bin('schema')], [5, i32(columns.length)]] },
    ...columns.map((name): TValue => ({ t: 'struct', v: [[1, i32(6)], [3, i32(0)], [4, bin(name)], [6, i32(0)]] })),
  ];
  const footer = new Out();
  footer.value({
    t: 'struct',
    v: [
      [1, i32(1)],
      [2, { t: 'list', elem: 'struct', v: schema }],
      [3, i64(rows.length)],
      [4, { t: 'list', elem: 'struct', v: [{ t: 'struct', v: [[1, { t: 'list', elem: 'struct', v: chunks }], [2, i64(file.bytes.length)], [3, i64(rows.length)]] }] }],
    ],
  });
  file.raw(footer.bytes);
  const n = footer.bytes.length;
  file.raw([n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, n >>> 24, 0x50, 0x41, 0x52, 0x31]);
  return new Uint8Array(file.bytes);
}
