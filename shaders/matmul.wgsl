// Dense matmul, f32 storage and f32 accumulation, optionally batched:
//   c[b] = alpha * op(a[b]) · op(b[b])  (+ c[b] when ACCUMULATE)
// Shapes (row-major, per batch entry b; entry b starts at b * strideA / strideB / strideC elements):
//   c (M, N);  a (M, K), or (K, M) when TRANS_A;  b (K, N), or (N, K) when TRANS_B.
// Reference op: torch.matmul(a, b) with a.T / b.T for the transposed variants (alpha * ... + c is
// torch.addmm(c, a, b, alpha=alpha)). The backward passes need every variant:
//   forward Y = X·Wᵀ (nn.Linear) is NT, dX = dY·W is NN, dW = dYᵀ·X is TN.
// Version 1: one workgroup computes a BM×BN tile of c from BK-deep slices of a and b staged in
// workgroup memory; each of the (BM/4)·(BN/4) threads owns a 4×4 block of outputs kept in registers
// (tfjs matmul_packed / torchlette t4×4 shape). Global reads are scalar and bounds-checked, so M, N
// and K may be anything (ragged edges read zeros). Staging runs lanes along the tile's rows in every
// layout, so its workgroup stores are free of bank conflicts. vec4 loads with the edge checks
// compiled out for shapes that divide the tile are the obvious version 2.

// The tile kernel (`main`) is shaders/lib/matmul_tile.wgsl, shared with matmul_f16 and
// matmul_packed_f16, which read their elements differently (aAt, bAt).
//#include matmul_tile

@group(0) @binding(2) var<storage, read> a: array<f32>;         // (batch, M, K) or (batch, K, M)
@group(0) @binding(3) var<storage, read> b: array<f32>;         // (batch, K, N) or (batch, N, K)

fn aAt(e: u32) -> f32 { return a[e]; }
fn bAt(e: u32) -> f32 { return b[e]; }

// Split-K's second dispatch: c[i] = alpha · Σ_s a[s·strideA + i] (+ c[i] when ACCUMULATE) for
// i < M·N, the batch = slices partial products added in slice order. Bindings c and a only.
@compute @workgroup_size(256)
fn sum_slices(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
              @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * 256u + lid;
  if (i < p.M * p.N) {
    var s = 0.0;
    for (var j = 0u; j < p.batch; j++) { s += a[j * p.strideA + i]; }
    var v = p.alpha * s;
    if (ACCUMULATE) { v += c[i]; }
    c[i] = v;
  }
}
