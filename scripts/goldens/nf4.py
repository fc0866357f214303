"""Goldens for NF4 (src/quant/nf4.ts, nf4_quantize, nf4_dequantize, matmul_nf4, matmul_nf4_backward).

bitsandbytes is not installed here (and its CUDA path needs a GPU), so this re-implements the
bitsandbytes torch reference path (backends/default/ops.py; docs/nf4.md), with torch ops only:
  absmax = |A|.max per block of 64 (f32), scaled = clamp(A * (1.0 / absmax.clamp(min=1e-38)), -1, 1),
  codes = torch.bucketize(scaled, (code[:-1] + code[1:]) / 2)   (right=False: ties -> lower code),
  packed = codes[::2] << 4 | codes[1::2] after padding an odd length with one 0.0.
Double quantization: offset = absmax.mean(); quantize_blockwise(absmax - offset, 256) with the dynamic
map built by torch the way bitsandbytes create_dynamic_map does (torch.linspace in f32).
Note: an older bitsandbytes default backend (@0155ecc) used argmin |scaled - code| and no 1e-38
clamp; the script prints how many codes that variant would change on the same data.

Cases
  quant:   10_277 values (odd length, a 37-element tail block): normals at scales 1e-3..1e2, a block
           with absmax 1.0 holding every threshold exactly (ties) and its f32 neighbours, +-1, blocks with
           power-of-two absmax holding scaled thresholds, +-absmax, an all-zero block, and blocks of
           random absmax m with values within 2 ulp of threshold * m (reciprocal rounding). Stored as f32 bits
           (int32) to keep the file small and exact; codes unpacked, packed bytes, absmax.
  dq:      600 first-level absmax values -> offset, qabsmax, absmax2, dequantized absmax, the map.
  mm_*:    Y = X @ dequant(W).T + b and dX = dY @ dequant(W) (autograd) at small ragged shapes.
"""
import torch
from common import t, write, gen

NF4 = torch.tensor([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0], dtype=torch.float32)
MID = (NF4[:-1] + NF4[1:]) / 2


def quantize_4bit(A, blocksize=64):
    n = A.numel()
    full, rem = n // blocksize, n % blocksize
    flat = A.reshape(n).float()
    absmax = torch.zeros(full + (1 if rem else 0), dtype=torch.float32)
    blocks = flat[: n - rem].reshape(full, blocksize)
    absmax[:full] = blocks.abs().max(dim=-1)[0]
    scaled = torch.clamp(blocks * (1.0 / absmax[:full].view(-1, 1).clamp(min=1e-38)), -1, 1).reshape(-1)
    if rem:
        tail = flat[n - rem:]
        absmax[-1] = tail.abs().max()
        scaled = torch.cat([scaled, torch.clamp(tail * (1.0 / absmax[-1:].clamp(min=1e-38)), -1, 1)])
    if n % 2:
        scaled = torch.nn.functional.pad(scaled, (0, 1), value=0.0)
    codes = torch.bucketize(scaled, MID)  # right=False: boundaries[i-1] < x <= boundaries[i]
    packed = (codes[::2] << 4) | codes[1::2]
    return codes[:n], packed.to(torch.uint8), absmax, scaled


def dequantize_4bit(packed, absmax, n, blocksize=64):
    codes = torch.empty(packed.numel() * 2, dtype=torch.long)
    codes[::2] = (packed >> 4).long()
    codes[1::2] = (packed & 0xF).long()
    w = NF4[codes[:n]]
    idx = torch.arange(n) // blocksize
    return w * absmax[idx]  # f32 product, as the reference keeps it


def create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8):
    # bitsandbytes functional.create_dynamic_map, torch ops.
    data = []
    non_sign_bits = total_bits - 1
    for i in range(max_exponent_bits):
        items = int(2 ** (i + non_sign_bits - max_exponent_bits) + 1)
        boundaries = torch.linspace(0.1, 1, items, dtype=torch.float32)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        data += ((10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
        data += (-(10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
    data.append(0)
    data.append(1.0)
    data.sort()
    return torch.tensor(data, dtype=torch.float32)


def quantize_blockwise(A, code, blocksize=256):
    n = A.numel()
    nb = -(-n // blocksize)
    padded = torch.nn.functional.pad(A, (0, nb * blocksize - n)).reshape(nb, blocksize)
    absmax = padded.abs().max(dim=-1)[0]
    scaled = torch.clamp(padded * (1.0 / absmax.view(-1, 1).clamp(min=1e-38)), -1, 1).reshape(-1)[:n]
    q = torch.bucketize(scaled, (code[:-1] + code[1:]) / 2)
    return q.to(torch.uint8), absmax


def dequantize_blockwise(q, absmax, code, blocksize=256):
    return code[q.long()] * absmax[torch.arange(q.numel()) // blocksize]


def f32(x):
    return torch.tensor(x, dtype=torch.float32)


def bits(x):
    return t(x.contiguous().view(torch.int32))


cases = {}

# ---- quant: >= 10_000 values, odd length, short tail block
g = gen(4242)
parts = []
for scale in [1e-3, 0.02, 0.1, 1.0, 3.0, 100.0]:
    parts.append(torch.randn(64 * 24, generator=g) * scale)  # 24 blocks per scale
# Ties: absmax 1.0 (so inv = 1 exactly) and every threshold exactly, plus f32 neighbours of each.
ties = torch.cat([f32([1.0, -1.0]), MID, torch.nextafter(MID, f32(2.0)), torch.nextafter(MID, f32(-2.0)), NF4])
parts.append(torch.nn.functional.pad(ties, (0, 64 - ties.numel())))  # 2 + 15*3 + 16 = 63 values
tie2 = torch.cat([f32([-1.0]), MID, -MID, f32([0.5, -0.5])])
parts.append(torch.nn.functional.pad(tie2, (0, 64 - tie2.numel())))
# Power-of-two absmax: inv is exact, so x = 2^e * threshold lands exactly on a threshold after scaling.
for e in [-7, 2, 5]:
    blk = torch.cat([f32([2.0 ** e]), MID * 2.0 ** e, -MID * 2.0 ** e, NF4 * 2.0 ** e])
    parts.append(torch.nn.functional.pad(blk, (0, 64 - blk.numel())))
# +-absmax for a random absmax (x * inv may be 1 - ulp, or clamp from above).
for s in [0.7, 1.3e-2, 37.0]:
    blk = torch.randn(64, generator=g) * s
    m = blk.abs().max()
    blk[5], blk[40] = m, -m
    parts.append(blk)
parts.append(torch.zeros(64))  # all-zero block: torch reference gives code 7 everywhere
# Reciprocal stress: random absmax m and values within 2 ulp of threshold * m, where an inv that is
# off by one ulp (e.g. a 2.5-ulp GPU division) flips codes.
for j, e in enumerate([-9, -3, 0, 1, 4, 11]):
    m = (0.5 + 0.5 * torch.rand(1, generator=g)) * 2.0 ** e
    p = torch.arange(1, 64)
    near = (MID[p % 15] * m).view(torch.int32) + ((p // 15) % 5 - 2).to(torch.int32)
    parts.append(torch.cat([m, near.view(torch.float32)]))
body = torch.cat(parts)
nfull = 160
body = torch.cat([body, torch.randn(64 * nfull - body.numel(), generator=g) * 0.05])
tail = torch.randn(37, generator=g) * 0.3
A = torch.cat([body, tail]).float()
assert A.numel() == 10_277 and A.numel() % 2 == 1
codes, packed, absmax, scaled = quantize_4bit(A)
deq = dequantize_4bit(packed, absmax, A.numel())
# Sanity checks the script itself must hold.
assert int(codes[64 * 144 + 2]) == 0  # first threshold exactly (absmax-1 block): tie -> lower code 0
zero_block = 64 * (144 + 1 + 1 + 3 + 3)
assert torch.all(codes[zero_block:zero_block + 64] == 7) and absmax[zero_block // 64] == 0
argmin_codes = torch.argmin(torch.abs(scaled[:A.numel()].view(-1, 1) - NF4), dim=-1)
print("argmin variant differs on", int((argmin_codes != codes).sum()), "of", A.numel(), "codes")
cases["quant"] = {
    "n": A.numel(), "blocksize": 64,
    "x_bits": bits(A), "codes": t(codes), "packed": t(packed), "absmax": t(absmax),
    "absmax_bits": bits(absmax), "w_head": t(deq[:640]),
}

# ---- double quantization of a first-level absmax vector (600 blocks -> 3 DQ blocks, ragged tail)
g = gen(77)
W = torch.randn(600 * 64, generator=g) * (0.01 + 0.05 * torch.rand(600 * 64, generator=g))
_, _, absmax1, _ = quantize_4bit(W)
code8 = create_dynamic_map()
offset = absmax1.mean()
qabs, absmax2 = quantize_blockwise(absmax1 - offset, code8)
absmax_dq = dequantize_blockwise(qabs, absmax2, code8) + offset
cases["dq"] = {
    "absmax": t(absmax1), "offset": float(offset), "qabsmax": t(qabs), "absmax2": t(absmax2),
    "absmax_dq": t(absmax_dq), "code": t(code8),
}

# ---- fused matmuls: small ragged shapes, K not a multiple of 64 (blocks cross rows)
for name, (M, N, K) in {"mm_small": (5, 7, 100), "mm_ragged": (3, 65, 67)}.items():
    g = gen(M * 10_000 + N * 100 + K)
    Wf = torch.randn(N, K, generator=g) * 0.1
    _, pk, am, _ = quantize_4bit(Wf)
    Wd = dequantize_4bit(pk, am, N * K).reshape(N, K)
    X = torch.randn(M, K, generator=g).requires_grad_(True)
    b = torch.randn(N, generator=g)
    dY = torch.randn(M, N, generator=g)
    Y = torch.nn.functional.linear(X, Wd, b)
    Y.backward(dY)
    cases[name] = {
        "M": M, "N": N, "K": K, "packed": t(pk), "absmax": t(am),
        "x": t(X), "bias": t(b), "y": t(Y), "dy": t(dY), "dx": t(X.grad),
    }
    if N * K <= 1000:  # torch's dequantized W, kept only where it is small (file size)
        cases[name]["w"] = t(Wd)

write("nf4", cases)
