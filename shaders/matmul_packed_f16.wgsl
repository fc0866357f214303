// Dense matmul with b stored as packed f16 pairs, f32 a, f32 accumulation and f32 c, optionally batched:
//   c[b] = alpha * op(a[b]) · op(f32(b[b]))  (+ c[b] when ACCUMULATE)
// Shapes as shaders/matmul.wgsl: c (M, N); a (M, K), or (K, M) when TRANS_A; b (K, N), or (N, K) when
// TRANS_B, counted in f16 elements. b is an array<u32> holding two f16 per word, element e in the
// low half of word e/2 when e is even (pack2x16float order, i.e. a little-endian Uint16Array), so it
// needs no shader-f16: unpack2x16float widens each value to f32 exactly.
// Why: the embedding / lm_head table (V, C) is the largest f32 buffer of a small model (Llama-3.2-1B:
// 1002 MiB); stored as f16 it is half that, and the logits matmul reads half the bytes. Reference op:
// torch.matmul(a, b.half().float()) (.T for the transposed variants): the product of the f16-rounded
// table, accumulated in f32.
// Version 1: matmul.wgsl's tiling and summation order, only the staging load of b differs, so on a
// table of f16-representable values both kernels agree to the last bit (modulo compiler contraction).

//#include matmul_tile

@group(0) @binding(2) var<storage, read> a: array<f32>;         // (batch, M, K) or (batch, K, M)
@group(0) @binding(3) var<storage, read> b: array<u32>;         // (batch, K, N) or (batch, N, K) f16, two per word

fn aAt(e: u32) -> f32 { return a[e]; }

// f16 element e of b, widened to f32.
fn bAt(e: u32) -> f32 {
  return unpack2x16float(b[e >> 1u])[e & 1u];
}
