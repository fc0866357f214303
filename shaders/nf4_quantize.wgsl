// NF4 quantization, bit-identical to bitsandbytes quantize_4bit(quant_type="nf4"), torch reference
// path (bitsandbytes backends/default/ops.py; docs/nf4.md):
//   absmax[b] = max |w| over block b of BS consecutive elements of the flattened weight
//   inv       = 1 / max(absmax, 1e-38)              correctly rounded in f32
//   code[i]   = bucketize(clamp(w[i] * inv, -1, 1), NF4 midpoints), ties to the lower code
//   packed byte k = code[2k] << 4 | code[2k + 1]    (first element in the high nibble)
// Shapes: w (n) = a weight (N, K) flattened row-major, blocks may cross rows; absmax (ceil(n / BS));
// packed (ceil(n / 8)) u32 words, little-endian (word j holds bytes 4j..4j+3). Elements at or past n
// get code 7 (0.0): that is bitsandbytes' padding of an odd length, and it fills the last word.
// An all-zero block gives absmax 0 and code 7 everywhere, like the torch reference (the CUDA kernel
// computes 1/0 = inf, 0 * inf = NaN and emits code 0 instead; both dequantize to 0).
// Version 1: each invocation owns one u32 word (8 codes), a block is BS / 8 consecutive invocations,
// WG / (BS / 8) blocks per workgroup. BS is a multiple of 8, so every block starts on a word boundary
// and owns its words: no two invocations ever write the same word, no atomics needed.
//
// Exactness, step by step:
//   - absmax is a max of |w| taken on the bit patterns: for non-negative floats the u32 order is the
//     float order, so an integer max is exact and immune to subnormal flushing.
//   - WGSL's `/` on f32 is only accurate to 2.5 ULP, so the reciprocal is computed with integers
//     (recip_bits below) and is the correctly rounded f32 1/absmax that torch computes.
//   - `w * inv` is a single f32 multiply: correctly rounded in WGSL (and not contractible).
//   - The 15 thresholds are the f32 midpoints as bit patterns (THRESH, the same bits as
//     NF4_THRESHOLD_BITS in src/quant/nf4.ts), via bitcast, and the code is the number of
//     thresholds strictly below the scaled value, so a value on a threshold goes down.
//     The clamp to [-1, 1] is omitted: it cannot change that count.
// Limits of the bit-identity claim: absmax < 2^126 (the reciprocal would be subnormal; beyond that we
// fall back to `1.0 / absmax`), and WGSL may flush subnormal inputs w to zero (code 7 either way
// unless absmax itself is subnormal). Real weights are nowhere near either.

override WG: u32 = 64;   // invocations per workgroup, a multiple of BS / 8
override BS: u32 = 64;   // blocksize (bitsandbytes: a power of two 32..4096; here BS / 8 <= WG)

struct Params {
  n: u32,       // elements in the flattened weight
  nblocks: u32, // ceil(n / BS)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> packed: array<u32>;  // (ceil(n / 8))
@group(0) @binding(2) var<storage, read_write> absmax: array<f32>;  // (ceil(n / BS))
@group(0) @binding(3) var<storage, read> w: array<f32>;             // (n) = (N, K) flattened

const THRESH = array<u32, 15>(
  0xbf591cd8u, 0xbf1c5270u, 0xbeeb8480u, 0xbeadea76u, 0xbe703cecu, 0xbe0d38bcu, 0xbd3a7871u, 0x3d22faffu,
  0x3df64862u, 0x3e5067e0u, 0x3e9582d4u, 0x3ec753f9u, 0x3f006d04u, 0x3f248dafu, 0x3f5c89dau);

// f32 1e-38 (a subnormal): torch clamps absmax to it so an all-zero block scales by 1e38, not inf.
const ABSMAX_FLOOR_BITS: u32 = 0x006ce3eeu;

var<workgroup> red: array<u32, WG>;

// Correctly rounded f32 bits of 1 / a, for a = bitcast<f32>(b), 0 < b < 0x7f800000 (normal or
// subnormal). Write a = Mm * 2^E with a 24-bit mantissa Mm in [2^23, 2^24) (subnormals normalised
// first). Then 1/a = (2^47 / Mm) * 2^(-47-E), and 2^47 / Mm lies in (2^23, 2^24]: in that binade the
// f32 grid is exactly the integers, so round-to-nearest of 2^47 / Mm to an integer q IS the f32
// rounding. q comes from a 48-step restoring long division in u32 (remainder < Mm < 2^24, so 2r fits).
// No ties are possible: 2^47 / Mm = j + 1/2 would need Mm to divide 2^48, i.e. Mm = 2^23, where the
// quotient is exact. The bits are then assembled by hand, so no float rounding is involved at all.
fn recip_bits(b: u32) -> u32 {
  var e = i32((b >> 23u) & 0xffu);
  var mm = b & 0x7fffffu;
  var ex: i32;
  if (e == 0) {                       // subnormal: a = m * 2^-149; shift m up to 24 bits
    let s = countLeadingZeros(mm) - 8u;
    mm = mm << s;
    ex = -149 - i32(s);
  } else {
    mm = mm | 0x800000u;
    ex = e - 150;                     // a = mm * 2^(e - 127 - 23)
  }
  var q = 0u;
  var r = 0u;
  for (var i = 0; i < 48; i++) {
    r = r << 1u;
    if (i == 0) { r = r | 1u; }       // the numerator 2^47 has a single 1 bit, the first one
    q = q << 1u;                      // q < 2^25 at the end, so the early shifts lose nothing
    if (r >= mm) { r -= mm; q = q | 1u; }
  }
  if (2u * r > mm) { q += 1u; }       // round to nearest (never a tie, see above)
  // 1/a = q * 2^(-47 - ex), q in [2^23, 2^24]. Normalise q to 24 bits.
  var pe = -47 - ex + 23;             // exponent of the leading bit of q
  if (q == 0x1000000u) { q = 0x800000u; pe += 1; }
  let biased = pe + 127;
  if (biased <= 0) {                  // subnormal reciprocal (absmax >= 2^126): outside the exact range
    return bitcast<u32>(1.0 / bitcast<f32>(b));
  }
  return (u32(biased) << 23u) | (q & 0x7fffffu);
}

fn nf4_code(x: f32) -> u32 {
  var c = 0u;
  for (var k = 0u; k < 15u; k++) {
    c += select(0u, 1u, x > bitcast<f32>(THRESH[k]));
  }
  return c;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let TPB = BS / 8u;                  // invocations (words) per block
  let wg = wid.x + wid.y * nwg.x;
  let blk = wg * (WG / TPB) + lid / TPB;
  let lane = lid % TPB;
  let word = blk * TPB + lane;
  let e0 = word * 8u;
  // No early return: every invocation reaches the barriers. Dead blocks and words load nothing.
  let live = blk < p.nblocks && e0 < p.n;

  var v: array<f32, 8>;
  var m = 0u;
  for (var j = 0u; j < 8u; j++) {
    let i = e0 + j;
    var x = 0.0;
    if (live && i < p.n) { x = w[i]; }
    v[j] = x;
    m = max(m, bitcast<u32>(x) & 0x7fffffffu);
  }

  // Max over the TPB invocations of this block (tree within each aligned group of TPB lanes).
  red[lid] = m;
  workgroupBarrier();
  for (var s = TPB / 2u; s > 0u; s >>= 1u) {
    if (lane < s) { red[lid] = max(red[lid], red[lid + s]); }
    workgroupBarrier();
  }
  let amax = red[lid - lane];

  if (live) {
    if (lane == 0u) { absmax[blk] = bitcast<f32>(amax); }
    let inv = bitcast<f32>(recip_bits(max(amax, ABSMAX_FLOOR_BITS)));
    var out = 0u;
    for (var j = 0u; j < 8u; j++) {
      var c = 7u;                     // past the end: bitsandbytes' odd-length pad, and word fill
      if (e0 + j < p.n) { c = nf4_code(v[j] * inv); }
      // byte j/2 of the word; the even element goes to its high nibble
      out |= c << (8u * (j >> 1u) + select(4u, 0u, (j & 1u) == 1u));
    }
    packed[word] = out;
  }
}
