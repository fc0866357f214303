// Embedding gather (nn.Embedding forward, transformers embed_tokens): x[n, :] = E[ids[n], :].
// Shapes: x (N, C); ids (N) u32; E_chunk (rows, C) = rows row0 .. row0+rows-1 of the table E (V, C).
// A large vocabulary does not fit one storage binding (Qwen2.5's 151936 x 896 f32 table is 545 MB;
// maxStorageBufferBindingSize may be 128 MiB), so the host binds one chunk of E per dispatch
// (embeddingChunks() in src/kernels/embedding.ts) and each dispatch writes only the rows whose id
// falls in its chunk. Every row is written by exactly one dispatch.
// Out-of-range ids (>= V) must not read out of bounds: the dispatch holding row 0 writes zeros for
// them. The data pipeline validates ids upstream, so zeros here only mean "no garbage, no fault".
// Frozen table under LoRA: no backward pass (dE) is needed.
// Version 1: one workgroup per token row, WG threads stride over C.

override WG: u32 = 64;

struct Params {
  N: u32,
  C: u32,
  V: u32,
  row0: u32,  // first table row held by this chunk
  rows: u32,  // rows in this chunk
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;  // (N, C)
@group(0) @binding(2) var<storage, read> ids: array<u32>;      // (N)
@group(0) @binding(3) var<storage, read> E: array<f32>;        // (rows, C): one chunk of (V, C)

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let n = wid.x + wid.y * nwg.x;
  if (n >= p.N) { return; }  // no barriers in this kernel
  let id = ids[n];
  let base = n * p.C;
  if (id >= p.V) {
    if (p.row0 == 0u) {
      for (var c = lid; c < p.C; c += WG) { x[base + c] = 0.0; }
    }
    return;
  }
  // Unsigned: id < row0 wraps to a huge value and fails the test too.
  let r = id - p.row0;
  if (r >= p.rows) { return; }
  let src = r * p.C;
  for (var c = lid; c < p.C; c += WG) { x[base + c] = E[src + c]; }
}
