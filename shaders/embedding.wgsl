// Embedding gather (nn.Embedding forward, transformers embed_tokens): x[n, :] = E[ids[n], :].
// Shapes: x (N, C); ids (N) u32; E_chunk (rows, C) = rows row0 .. row0+rows-1 of the table E (V, C).
// A large vocabulary does not fit one storage binding (Qwen2.5's 151936 x 896 f32 table is 545 MB;
// maxStorageBufferBindingSize may be 128 MiB), so the host binds one chunk of E per dispatch
// (embeddingChunks() in src/kernels/embedding.ts) and each dispatch writes only the rows whose id
// falls in its chunk. Every row is written by exactly one dispatch.
// Out-of-range ids (>= V) must not read out of bounds: the dispatch holding row 0 writes zeros for
// them. The data pipeline validates ids upstream, so zeros here only mean "no garbage, no fault".
// Rows are multiplied by `scale` (1 for most families; Gemma's sqrt(hidden_size) normalizer).
// Frozen table under LoRA: no backward pass (dE) is needed.
// Two storages of E, one entry point each: `main` reads f32; `main_f16` reads f16 pairs packed in
// u32 words (element e in the low half of word e/2 when e is even, pack2x16float order), widened
// exactly by unpack2x16float, so f16 storage needs no shader-f16. Each entry point's interface
// holds one variable at binding 3, which WGSL allows; the host picks the entry.
// Version 1: one workgroup per token row, WG threads stride over C.

override WG: u32 = 64;

struct Params {
  N: u32,
  C: u32,
  V: u32,
  row0: u32,  // first table row held by this chunk
  rows: u32,  // rows in this chunk
  scale: f32, // factor on every copied row
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;  // (N, C)
@group(0) @binding(2) var<storage, read> ids: array<u32>;      // (N)
@group(0) @binding(3) var<storage, read> E: array<f32>;        // (rows, C): one chunk of (V, C), main
@group(0) @binding(3) var<storage, read> E16: array<u32>;      // (rows, C) f16, two per word, main_f16

const NONE = 0xffffffffu;

// The chunk row token n copies, or NONE when it has nothing to copy here (not this chunk's, or an
// out-of-range id, whose zeros the chunk holding row 0 writes).
fn chunkRow(n: u32, lid: u32) -> u32 {
  let id = ids[n];
  if (id >= p.V) {
    if (p.row0 == 0u) {
      for (var c = lid; c < p.C; c += WG) { x[n * p.C + c] = 0.0; }
    }
    return NONE;
  }
  // Unsigned: id < row0 wraps to a huge value and fails the test too.
  let r = id - p.row0;
  if (r >= p.rows) { return NONE; }
  return r;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let n = wid.x + wid.y * nwg.x;
  if (n >= p.N) { return; }  // no barriers in this kernel
  let r = chunkRow(n, lid);
  if (r == NONE) { return; }
  let base = n * p.C;
  let src = r * p.C;
  for (var c = lid; c < p.C; c += WG) { x[base + c] = E[src + c] * p.scale; }
}

@compute @workgroup_size(WG)
fn main_f16(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
            @builtin(local_invocation_index) lid: u32) {
  let n = wid.x + wid.y * nwg.x;
  if (n >= p.N) { return; }
  let r = chunkRow(n, lid);
  if (r == NONE) { return; }
  let base = n * p.C;
  let src = r * p.C;   // in f16 elements: a row may start in the high half of a word (odd C)
  for (var c = lid; c < p.C; c += WG) {
    let e = src + c;
    x[base + c] = unpack2x16float(E16[e >> 1u])[e & 1u] * p.scale;
  }
}
