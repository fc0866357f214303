// Decode-speed NF4 matrix-vector product, the M = 1..4 form of matmul_nf4.wgsl:
//   Y (M, N) (=|+=) X (M, K) · dequant(W)ᵀ (+ bias (N)),   M = 1..4 rows (tokens).
// W (N, K) is the nn.Linear weight [out, in], NF4-packed as bitsandbytes does it (docs/nf4.md): flat
// element f = n*K + k has its code in byte f/2 (even f in the high nibble) of little-endian u32 words
// and its scale in absmax[f / BS]; a block crosses rows when K % BS != 0. Reference op: bitsandbytes
// gemv_4bit = torch.nn.functional.linear(X, dequantize_4bit(W), bias). matmulNf4()
// (src/kernels/matmul_nf4.ts) routes M <= 4 here.
// Why a kernel of its own: one token reads 0.56 bytes of weight per 2 FLOPs, so decode is bound by
// reading W once; matmul_nf4's 64×64 tile would decode every weight for 64 rows of which one is live.
// Version 2 (f32; the reduction takes subgroups where the device has them):
//   - a workgroup has GROUPS groups of WG_K invocations and computes GROUPS × COLS output columns
//     for all M rows; group g owns columns n0 + g·COLS + c;
//   - `main` (K % 32 == 0 and BS % 32 == 0): lane t reads one vec4<u32> = 32 codes = half a
//     64-block of a W row per step, chunks t, t + WG_K, ... (neighbouring lanes, neighbouring 16
//     bytes: coalesced). A 32-aligned run of 32 codes lies inside one block, so one absmax per
//     load, applied once to the 32-term dot product;
//   - `main_scalar` (any K, any BS): lane t takes elements t, t + WG_K, ... of the row, one code each;
//   - each x load is reused for COLS columns and each decoded weight for M rows;
//   - each output's partials go to a padded row of workgroup memory and one invocation adds them
//     up in order: COLS · MR · GROUPS · (WG_K + 1) f32 = 8.1 KiB at 64 lanes, 9 KiB at 8, plus the
//     LUT and the 1 KiB dynamic map (the portable limit is 16 KiB). WG_K >= COLS · MR keeps an
//     invocation for every output;
//   - subgroup path: each subgroup pre-sums its lanes with subgroupAdd (WG_K / subgroup-size
//     partials per output), lanes numbered by (subgroup_id, subgroup_invocation_id) where the
//     subgroups tile the workgroup; as matvec.wgsl, whose header says why that is safe;
//   - DQ: double-quantized absmax as in matmul_nf4.wgsl (blockScale), one decode per scale read.
// The two entry points declare bindings 2 and 3 with different element types; each entry point's
// interface holds one variable per binding, which WGSL allows, and the host picks the entry.
// A byte → (even, odd) LUT is the obvious next experiment.

//#if subgroups
enable subgroups;
//#endif

const MR = 4u;                    // most rows of X per dispatch (the host checks M <= MR)
const COLS = 2u;                  // output columns per group (x reuse in registers)
override WG_K: u32 = 64;          // lanes along K per column group: 8..64, sized to K by the host
override GROUPS: u32 = 4;         // column groups per workgroup
override WG: u32 = WG_K * GROUPS; // derived; not meant to be overridden on its own
override ACCUMULATE: bool = false;
override HAS_BIAS: bool = false;
override BS: u32 = 64;            // NF4 blocksize
override DQ: bool = false;        // absmax holds double-quantized words, not f32 (see blockScale)
override SG_REDUCE: bool = true;  // subgroup path: false keeps the portable lane numbering and sum

struct Params {
  M: u32,
  N: u32,
  K: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> Y: array<f32>;      // (M, N)
@group(0) @binding(2) var<storage, read> X: array<f32>;            // (M, K), main_scalar
@group(0) @binding(3) var<storage, read> Wq: array<u32>;           // (ceil(N*K / 8)), main_scalar
@group(0) @binding(2) var<storage, read> X4: array<vec4<f32>>;     // (M, K/4), main
@group(0) @binding(3) var<storage, read> Wq4: array<vec4<u32>>;    // (N*K / 32), main
@group(0) @binding(4) var<storage, read> absmax: array<u32>;       // (ceil(N*K / BS)) f32 bits, or DQ words
@group(0) @binding(5) var<storage, read> bias: array<f32>;         // (N), read only when HAS_BIAS

const NF4 = array<u32, 16>(
  0xbf800000u, 0xbf3239b1u, 0xbf066b30u, 0xbeca32a0u, 0xbe91a24du, 0xbe3d353fu, 0xbdba7871u, 0x00000000u,
  0x3da2faffu, 0x3e24cae3u, 0x3e7c04ddu, 0x3ead033au, 0x3ee1a4b8u, 0x3f1007abu, 0x3f3913b3u, 0x3f800000u);

var<workgroup> lut: array<f32, 16>;          // codebook in workgroup memory: 16 banks, no spills
// red[o * (WG_K + 1) + t] with o = (c * MR + m) * GROUPS + g: the WG_K partials of output o in one
// padded row, so the invocations summing neighbouring outputs read different banks.
var<workgroup> red: array<f32, COLS * MR * GROUPS * (WG_K + 1u)>;

// bitsandbytes' 8-bit dynamic map, create_dynamic_map(signed=True) (src/quant/nf4.ts DYNAMIC_MAP),
// as f32 bits; read only when DQ. src/quant/nf4.test.ts checks this copy against the CPU table.
const DMAP = array<u32, 256>(
  0xbf7e3333u, 0xbf7a999au, 0xbf770000u, 0xbf736666u, 0xbf6fcccdu, 0xbf6c3333u, 0xbf68999au, 0xbf650000u,
  0xbf616666u, 0xbf5dcccdu, 0xbf5a3333u, 0xbf56999au, 0xbf530000u, 0xbf4f6666u, 0xbf4bcccdu, 0xbf483333u,
  0xbf44999au, 0xbf410000u, 0xbf3d6666u, 0xbf39cccdu, 0xbf363333u, 0xbf32999au, 0xbf2f0000u, 0xbf2b6666u,
  0xbf27cccdu, 0xbf243333u, 0xbf20999au, 0xbf1d0000u, 0xbf196666u, 0xbf15cccdu, 0xbf123333u, 0xbf0e999au,
  0xbf0b0000u, 0xbf076666u, 0xbf03cccdu, 0xbf003333u, 0xbef93334u, 0xbef20000u, 0xbeeaccccu, 0xbee3999au,
  0xbedc6666u, 0xbed53334u, 0xbece0000u, 0xbec6ccccu, 0xbebf999au, 0xbeb86666u, 0xbeb13334u, 0xbeaa0000u,
  0xbea2ccccu, 0xbe9b999au, 0xbe946666u, 0xbe8d3334u, 0xbe860000u, 0xbe7d9999u, 0xbe6f3333u, 0xbe60cccdu,
  0xbe526666u, 0xbe440000u, 0xbe35999au, 0xbe273333u, 0xbe18cccdu, 0xbe0a6666u, 0xbdf80000u, 0xbddb3334u,
  0xbdc9eb85u, 0xbdc428f7u, 0xbdbe6667u, 0xbdb8a3d7u, 0xbdb2e148u, 0xbdad1eb8u, 0xbda75c2au, 0xbda1999au,
  0xbd9bd70au, 0xbd96147bu, 0xbd9051ebu, 0xbd8a8f5du, 0xbd84cccdu, 0xbd7e147au, 0xbd728f5du, 0xbd670a3du,
  0xbd5b8520u, 0xbd500000u, 0xbd447ae2u, 0xbd38f5c3u, 0xbd2d70a4u, 0xbd21eb85u, 0xbd166667u, 0xbd0ae148u,
  0xbcfeb852u, 0xbce7ae15u, 0xbcd0a3d7u, 0xbcb9999au, 0xbca28f5du, 0xbc8b851fu, 0xbc68f5c3u, 0xbc3ae148u,
  0xbc1f3b64u, 0xbc160418u, 0xbc0ccccdu, 0xbc039581u, 0xbbf4bc6au, 0xbbe24dd3u, 0xbbcfdf3bu, 0xbbbd70a4u,
  0xbbab020du, 0xbb989374u, 0xbb8624ddu, 0xbb676c8au, 0xbb428f5cu, 0xbb1db22du, 0xbaf1a9fcu, 0xbaa7ef9du,
  0xba7765ffu, 0xba59e83eu, 0xba3c6a80u, 0xba1eecc1u, 0xba016f01u, 0xb9c7e283u, 0xb98ce705u, 0xb923d70bu,
  0xb8ba1f4bu, 0xb88aefb3u, 0xb8378034u, 0xb7b24206u, 0xb70205ffu, 0xb65a1a94u, 0xb513a3b7u, 0x00000000u,
  0x3513a3b7u, 0x365a1a94u, 0x370205ffu, 0x37b24206u, 0x38378034u, 0x388aefb3u, 0x38ba1f4bu, 0x3923d70bu,
  0x398ce705u, 0x39c7e283u, 0x3a016f01u, 0x3a1eecc1u, 0x3a3c6a80u, 0x3a59e83eu, 0x3a7765ffu, 0x3aa7ef9du,
  0x3af1a9fcu, 0x3b1db22du, 0x3b428f5cu, 0x3b676c8au, 0x3b8624ddu, 0x3b989374u, 0x3bab020du, 0x3bbd70a4u,
  0x3bcfdf3bu, 0x3be24dd3u, 0x3bf4bc6au, 0x3c039581u, 0x3c0ccccdu, 0x3c160418u, 0x3c1f3b64u, 0x3c3ae148u,
  0x3c68f5c3u, 0x3c8b851fu, 0x3ca28f5du, 0x3cb9999au, 0x3cd0a3d7u, 0x3ce7ae15u, 0x3cfeb852u, 0x3d0ae148u,
  0x3d166667u, 0x3d21eb85u, 0x3d2d70a4u, 0x3d38f5c3u, 0x3d447ae2u, 0x3d500000u, 0x3d5b8520u, 0x3d670a3du,
  0x3d728f5du, 0x3d7e147au, 0x3d84cccdu, 0x3d8a8f5du, 0x3d9051ebu, 0x3d96147bu, 0x3d9bd70au, 0x3da1999au,
  0x3da75c2au, 0x3dad1eb8u, 0x3db2e148u, 0x3db8a3d7u, 0x3dbe6667u, 0x3dc428f7u, 0x3dc9eb85u, 0x3ddb3334u,
  0x3df80000u, 0x3e0a6666u, 0x3e18cccdu, 0x3e273333u, 0x3e35999au, 0x3e440000u, 0x3e526666u, 0x3e60cccdu,
  0x3e6f3333u, 0x3e7d9999u, 0x3e860000u, 0x3e8d3334u, 0x3e946666u, 0x3e9b999au, 0x3ea2ccccu, 0x3eaa0000u,
  0x3eb13334u, 0x3eb86666u, 0x3ebf999au, 0x3ec6ccccu, 0x3ece0000u, 0x3ed53334u, 0x3edc6666u, 0x3ee3999au,
  0x3eeaccccu, 0x3ef20000u, 0x3ef93334u, 0x3f003333u, 0x3f03cccdu, 0x3f076666u, 0x3f0b0000u, 0x3f0e999au,
  0x3f123333u, 0x3f15cccdu, 0x3f196666u, 0x3f1d0000u, 0x3f20999au, 0x3f243333u, 0x3f27cccdu, 0x3f2b6666u,
  0x3f2f0000u, 0x3f32999au, 0x3f363333u, 0x3f39cccdu, 0x3f3d6666u, 0x3f410000u, 0x3f44999au, 0x3f483333u,
  0x3f4bcccdu, 0x3f4f6666u, 0x3f530000u, 0x3f56999au, 0x3f5a3333u, 0x3f5dcccdu, 0x3f616666u, 0x3f650000u,
  0x3f68999au, 0x3f6c3333u, 0x3f6fcccdu, 0x3f736666u, 0x3f770000u, 0x3f7a999au, 0x3f7e3333u, 0x3f800000u);
var<workgroup> dmap: array<f32, 256>;

// The f32 scale of NF4 block b (of nb). Plain: absmax[b]. DQ (src/quant/nf4.ts packDoubleQuant):
// the block's 8-bit code through the dynamic map, times its run of 256's absmax2, plus the offset:
// the f32 operations of the CPU doubleDequantize, so the scale equals the f32 absmax it replaces
// (a driver that contracts the multiply-add into one fma could differ in the last bit; SwiftShader
// does not, and the kernel tests check bit equality with the f32-absmax path).
fn blockScale(b: u32, nb: u32) -> f32 {
  if (!DQ) { return bitcast<f32>(absmax[b]); }
  let code = (absmax[b >> 2u] >> (8u * (b & 3u))) & 255u;
  let q = (nb + 3u) / 4u;
  let scaled = dmap[code] * bitcast<f32>(absmax[q + b / 256u]);
  return scaled + bitcast<f32>(absmax[q + (nb + 255u) / 256u]);
}

// Fill the LUT; every invocation calls this first, from uniform control flow.
fn loadLut(lid: u32) {
  if (lid < 16u) { lut[lid] = bitcast<f32>(NF4[lid]); }
  if (DQ) {
    for (var i = lid; i < 256u; i += WG) { dmap[i] = bitcast<f32>(DMAP[i]); }
  }
  workgroupBarrier();
}

// The invocation's ids and the workgroup's (uniform: branches on `Wg` fields may hold subgroupAdd);
// matvec.wgsl has the same three helpers.
struct Ids {
  @builtin(local_invocation_index) lid: u32,
//#if subgroups
  @builtin(subgroup_invocation_id) lane: u32,
  @builtin(subgroup_id) sg: u32,
//#endif
}
struct Wg {
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
//#if subgroups
  @builtin(subgroup_size) sgs: u32,
  @builtin(num_subgroups) nsg: u32,
//#endif
}

// Whether each subgroup lies inside one column group under `lane`'s numbering.
fn subSum(wg: Wg) -> bool {
//#if subgroups
  return SG_REDUCE && wg.nsg * wg.sgs == WG && wg.sgs <= WG_K;
//#else
  return false;
//#endif
}
fn partsPerOutput(wg: Wg) -> u32 {
//#if subgroups
  if (subSum(wg)) { return WG_K / wg.sgs; }
//#endif
  return WG_K;
}
// The invocation's column group g and lane t in it.
fn lane(id: Ids, wg: Wg) -> vec2u {
  var i = id.lid;
//#if subgroups
  if (subSum(wg)) { i = id.sg * wg.sgs + id.lane; }
//#endif
  return vec2u(i / WG_K, i % WG_K);
}

// Sum the partials of every (column, row), add the bias and store. Called from uniform control
// flow by every invocation: it contains a barrier. One invocation per output adds its partials
// in order: one barrier instead of a log2(WG_K)-step tree (a CPU implementation such as SwiftShader
// pays per barrier per workgroup; on a GPU either is small next to reading W).
fn reduceAndStore(id: Ids, wg: Wg, n0: u32, acc: array<array<f32, MR>, COLS>) {
  let gt = lane(id, wg);
  for (var c = 0u; c < COLS; c++) {
    for (var m = 0u; m < MR; m++) {
      let row = ((c * MR + m) * GROUPS + gt.x) * (WG_K + 1u);
//#if subgroups
      if (subSum(wg)) {
        let s = subgroupAdd(acc[c][m]);
        if (id.lane == 0u) { red[row + gt.y / wg.sgs] = s; }
        continue;
      }
//#endif
      red[row + gt.y] = acc[c][m];
    }
  }
  workgroupBarrier();
  let lid = id.lid;
  let parts = partsPerOutput(wg);
  if (lid < COLS * MR * GROUPS) {
    let m = (lid / GROUPS) % MR;
    let n = n0 + (lid % GROUPS) * COLS + lid / (GROUPS * MR);
    if (m < p.M && n < p.N) {
      var s = 0.0;
      for (var i = 0u; i < parts; i++) { s += red[lid * (WG_K + 1u) + i]; }
      var v = s;
      if (HAS_BIAS) { v += bias[n]; }
      let o = m * p.N + n;
      if (ACCUMULATE) { Y[o] += v; } else { Y[o] = v; }
    }
  }
}

// The 8 codebook values of one packed word in element order e0..e7 (e0 = high nibble of byte 0),
// unscaled: the caller applies absmax once per 32 codes.
fn decodeLo(w: u32) -> vec4<f32> {
  return vec4<f32>(lut[(w >> 4u) & 15u], lut[w & 15u], lut[(w >> 12u) & 15u], lut[(w >> 8u) & 15u]);
}
fn decodeHi(w: u32) -> vec4<f32> {
  return vec4<f32>(lut[(w >> 20u) & 15u], lut[(w >> 16u) & 15u], lut[(w >> 28u) & 15u], lut[(w >> 24u) & 15u]);
}

@compute @workgroup_size(WG)
fn main(id: Ids, wg: Wg) {
  loadLut(id.lid);
  // The grid may be split over x and y (N / (GROUPS·COLS) > 65535); rebuild the linear id. A
  // workgroup past the end has n0 >= N: it loads nothing and stores nothing, but still reaches
  // every barrier.
  let n0 = (wg.wid.x + wg.wid.y * wg.nwg.x) * (GROUPS * COLS);
  let gt = lane(id, wg);
  let g = gt.x;
  let t = gt.y;
  let K4 = p.K / 4u;     // vec4 of x per row
  let K32 = p.K / 32u;   // vec4<u32> of codes per row (K % 32 == 0: rows start on a vec4 boundary)
  var acc: array<array<f32, MR>, COLS>;
  for (var j = t; j < K32; j += WG_K) {
    // The codes and scale of this 32-element chunk for each of the group's columns.
    var codes: array<vec4<u32>, COLS>;
    var scale: array<f32, COLS>;
    for (var c = 0u; c < COLS; c++) {
      let n = n0 + g * COLS + c;
      if (n < p.N) {
        codes[c] = Wq4[n * K32 + j];
        scale[c] = blockScale((n * p.K + 32u * j) / BS, (p.N * p.K + BS - 1u) / BS);
      }
    }
    var part: array<array<f32, MR>, COLS>;
    for (var i = 0u; i < 4u; i++) {
      // Elements 32j + 8i .. 32j + 8i + 7 of each x row: two vec4, shared by the COLS columns.
      var xa: array<vec4<f32>, MR>;
      var xb: array<vec4<f32>, MR>;
      for (var m = 0u; m < MR; m++) {
        if (m < p.M) {
          xa[m] = X4[m * K4 + 8u * j + 2u * i];
          xb[m] = X4[m * K4 + 8u * j + 2u * i + 1u];
        }
      }
      for (var c = 0u; c < COLS; c++) {
        let wa = decodeLo(codes[c][i]);
        let wb = decodeHi(codes[c][i]);
        for (var m = 0u; m < MR; m++) { part[c][m] += dot(xa[m], wa) + dot(xb[m], wb); }
      }
    }
    // Columns past N decoded zero-initialised codes (code 0 = -1.0) against scale 0: they add 0.
    for (var c = 0u; c < COLS; c++) {
      for (var m = 0u; m < MR; m++) { acc[c][m] = fma(scale[c], part[c][m], acc[c][m]); }
    }
  }
  reduceAndStore(id, wg, n0, acc);
}

// dequant(W) at flat index f = n*K + k, read through the workgroup LUT.
fn weight(f: u32) -> f32 {
  let shift = 8u * ((f >> 1u) & 3u) + select(4u, 0u, (f & 1u) == 1u);
  let code = (Wq[f >> 3u] >> shift) & 15u;
  return lut[code] * blockScale(f / BS, (p.N * p.K + BS - 1u) / BS);
}

@compute @workgroup_size(WG)
fn main_scalar(id: Ids, wg: Wg) {
  // Same walk as `main`, one element per lane per step: any K, any blocksize (a block may start
  // anywhere in a row), 4-byte loads. Real checkpoints (K a multiple of 64) take `main`.
  loadLut(id.lid);
  let n0 = (wg.wid.x + wg.wid.y * wg.nwg.x) * (GROUPS * COLS);
  let gt = lane(id, wg);
  let g = gt.x;
  let t = gt.y;
  var acc: array<array<f32, MR>, COLS>;
  for (var k = t; k < p.K; k += WG_K) {
    var xv: array<f32, MR>;
    for (var m = 0u; m < MR; m++) {
      if (m < p.M) { xv[m] = X[m * p.K + k]; }
    }
    for (var c = 0u; c < COLS; c++) {
      let n = n0 + g * COLS + c;
      if (n < p.N) {
        let w = weight(n * p.K + k);
        for (var m = 0u; m < MR; m++) { acc[c][m] = fma(xv[m], w, acc[c][m]); }
      }
    }
  }
  reduceAndStore(id, wg, n0, acc);
}
