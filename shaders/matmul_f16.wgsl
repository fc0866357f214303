// Dense matmul with f16 storage of the operands, f32 accumulation and f32 output, optionally batched:
//   c[b] = alpha * op(f32(a[b])) · op(f32(b[b]))  (+ c[b] when ACCUMULATE)
// Shapes (row-major, per batch entry b; entry b starts at b * strideA / strideB / strideC elements):
//   c (M, N) f32;  a (M, K), or (K, M) when TRANS_A, f16;  b (K, N), or (N, K) when TRANS_B, f16.
// Reference op: torch.matmul(a.float(), b.float()) with .T for the transposed variants, i.e. the
// product of the f16-rounded operands accumulated in f32 (not torch's f16 matmul, which may round
// partial sums to f16: training needs the f32 accumulator, as ONNX Runtime's WebGPU bnb4 kernels keep).
// Needs the `shader-f16` device feature; the host refuses to build it without one and matmulAuto
// falls back to f32 storage (shaders/matmul.wgsl).
// Version 1: shaders/matmul.wgsl's tiling (BM×BN tile, BK slices in workgroup memory, 4×4 outputs
// per thread) with the operands widened to f32 as they are staged, so the tiles, the inner loop and
// the summation order are those of the f32 kernel: on f16-representable inputs both kernels should
// agree to the last bit or nearly (a compiler may still contract differently). Halving global traffic is the gain; f16 workgroup tiles (half the
// workgroup memory, BK 32 at 8 KiB) and vec4<f16> loads are version 2.

enable f16;

//#include matmul_tile

@group(0) @binding(2) var<storage, read> a: array<f16>;         // (batch, M, K) or (batch, K, M)
@group(0) @binding(3) var<storage, read> b: array<f16>;         // (batch, K, N) or (batch, N, K)

// f16 elements widened exactly as they are staged.
fn aAt(e: u32) -> f32 { return f32(a[e]); }
fn bAt(e: u32) -> f32 { return f32(b[e]); }
