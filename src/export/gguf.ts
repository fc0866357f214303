// A GGUF (version 3) writer, for the files llama.cpp reads: the layout of ggml's docs/gguf.md and
// gguf-py's gguf_writer.py:
//   magic "GGUF", u32 version, u64 tensor count, u64 key/value count;
//   key/values: key (u64 length + UTF-8), u32 value type, value (arrays: u32 item type, u64 count, items);
//   tensor infos: name, u32 n_dims, u64 ne[n_dims] (ne[0] the fastest-moving dimension, the reverse of
//   the torch shape), u32 ggml type, u64 offset into the data section (a multiple of the alignment);
//   zero padding to the alignment (32 unless general.alignment says otherwise), then each tensor's
//   bytes, each padded with zeros to the alignment (the last one too, as gguf_writer does).
// Everything little-endian. Adapters are megabytes, so the file is assembled in memory.
import { ModelFileError } from '../errors.ts';

export const GGUF_MAGIC = 'GGUF';
export const GGUF_VERSION = 3;
export const GGUF_ALIGNMENT = 32;

/** gguf-py constants.py GGUFValueType. */
export const GgufValueType = { UINT8: 0, INT8: 1, UINT16: 2, INT16: 3, UINT32: 4, INT32: 5, FLOAT32: 6, BOOL: 7, STRING: 8, ARRAY: 9, UINT64: 10, INT64: 11, FLOAT64: 12 } as const;

/** ggml_type ids of the tensor types we write (ggml.h: GGML_TYPE_F32 = 0, GGML_TYPE_F16 = 1). */
export const GgmlType = { F32: 0, F16: 1 } as const;
export type GgmlTypeName = keyof typeof GgmlType;

export type GgufValue =
  | { type: 'string'; value: string }
  | { type: 'u32'; value: number }
  | { type: 'i32'; value: number }
  | { type: 'f32'; value: number }
  | { type: 'bool'; value: boolean }
  | { type: 'u32[]'; value: number[] };

export interface GgufTensor {
  name: string;
  /** ggml order: ne[0] first (for a torch tensor of shape [rows, cols] this is [cols, rows]). */
  ne: number[];
  type: GgmlTypeName;
  /** Little-endian element bytes. */
  data: Uint8Array;
}

const utf8 = new TextEncoder();
const ELEMENT_BYTES: Record<GgmlTypeName, number> = { F32: 4, F16: 2 };

class ByteWriter {
  private buf = new Uint8Array(1024);
  private dv = new DataView(this.buf.buffer);
  length = 0;
  private need(n: number) {
    if (this.length + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.length + n));
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.dv = new DataView(next.buffer);
  }
  u8(x: number) { this.need(1); this.dv.setUint8(this.length, x); this.length += 1; }
  u32(x: number) { this.need(4); this.dv.setUint32(this.length, x, true); this.length += 4; }
  i32(x: number) { this.need(4); this.dv.setInt32(this.length, x, true); this.length += 4; }
  f32(x: number) { this.need(4); this.dv.setFloat32(this.length, x, true); this.length += 4; }
  u64(x: number) { this.need(8); this.dv.setBigUint64(this.length, BigInt(x), true); this.length += 8; }
  bytes(b: Uint8Array) { this.need(b.length); this.buf.set(b, this.length); this.length += b.length; }
  str(s: string) { const b = utf8.encode(s); this.u64(b.length); this.bytes(b); }
  pad(align: number) { const n = (align - (this.length % align)) % align; this.need(n); this.length += n; } // zeros: fresh bytes are 0
  result(): Uint8Array { return this.buf.slice(0, this.length); }
}

function writeValue(w: ByteWriter, v: GgufValue): void {
  switch (v.type) {
    case 'string': w.u32(GgufValueType.STRING); w.str(v.value); return;
    case 'u32': w.u32(GgufValueType.UINT32); w.u32(v.value); return;
    case 'i32': w.u32(GgufValueType.INT32); w.i32(v.value); return;
    case 'f32': w.u32(GgufValueType.FLOAT32); w.f32(v.value); return;
    case 'bool': w.u32(GgufValueType.BOOL); w.u8(v.value ? 1 : 0); return;
    case 'u32[]':
      w.u32(GgufValueType.ARRAY); w.u32(GgufValueType.UINT32); w.u64(v.value.length);
      for (const x of v.value) w.u32(x);
      return;
  }
}

/** A whole GGUF file. Keys and tensor names must be unique; each tensor's bytes must match its shape. */
export function writeGguf(kv: readonly (readonly [string, GgufValue])[], tensors: readonly GgufTensor[], alignment = GGUF_ALIGNMENT): Uint8Array {
  const bad = (what: string, details: Record<string, unknown>) => new ModelFileError(`Cannot write GGUF: ${what}.`, 'This is a bug in the GGUF export; please report it.', details);
  const keys = new Set<string>();
  for (const [k] of kv) {
    if (keys.has(k)) throw bad(`the key "${k}" is given twice`, { field: k });
    keys.add(k);
  }
  const names = new Set<string>();
  for (const t of tensors) {
    if (names.has(t.name)) throw bad(`the tensor "${t.name}" is given twice`, { tensor: t.name });
    names.add(t.name);
    const n = t.ne.reduce((a, d) => a * d, 1);
    if (t.data.byteLength !== n * ELEMENT_BYTES[t.type]) throw bad(`tensor "${t.name}" has ${t.data.byteLength} bytes, ${t.type} [${t.ne}] needs ${n * ELEMENT_BYTES[t.type]}`, { tensor: t.name });
    // llama.cpp's GGML_MAX_NAME is 64 bytes including the terminating NUL.
    if (utf8.encode(t.name).length >= 64) throw bad(`tensor name "${t.name}" is 64 bytes or longer`, { tensor: t.name });
  }
  const w = new ByteWriter();
  w.bytes(utf8.encode(GGUF_MAGIC));
  w.u32(GGUF_VERSION);
  w.u64(tensors.length);
  w.u64(kv.length);
  for (const [k, v] of kv) {
    w.str(k);
    writeValue(w, v);
  }
  let offset = 0;
  for (const t of tensors) {
    w.str(t.name);
    w.u32(t.ne.length);
    for (const d of t.ne) w.u64(d);
    w.u32(GgmlType[t.type]);
    w.u64(offset);
    offset += Math.ceil(t.data.byteLength / alignment) * alignment;
  }
  w.pad(alignment);
  for (const t of tensors) {
    w.bytes(t.data);
    w.pad(alignment);
  }
  return w.result();
}
