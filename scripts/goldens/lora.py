"""Goldens for lora_forward / lora_backward: a PEFT-style LoRA Linear in float32 with torch autograd.

y = x Wᵀ + scale · (drop(x) Aᵀ) Bᵀ, scale = alpha / r (or alpha / sqrt(r) with rsLoRA), as in PEFT
tuners/lora/layer.py. torch's own dropout RNG cannot be reproduced on the GPU, so the mask comes from
the kernels' stateless hash, re-implemented here in numpy: keep(i) = pcg(i ^ pcg(seed)) >= floor(p·2^32)
over the flat index i of x, kept values times 1/(1-p) (in float32, as nn.Dropout scales). The rest
(both matmuls, the scale, all gradients) is torch's ops and autograd. B is random rather than PEFT's
zero init so that every gradient is non-trivial.
Stored per case: inputs x, W, A, B, dY, the base outputs y_base = x Wᵀ and dx_base = dY W (the
kernels add onto those), and outputs y, U, dX (total, base + LoRA), dA, dB.
"""
import math
import numpy as np
import torch
from common import t, write, gen


def pcg(v):
    v = np.asarray(v, dtype=np.uint32)
    with np.errstate(over="ignore"):
        state = v * np.uint32(747796405) + np.uint32(2891336453)
        word = ((state >> ((state >> np.uint32(28)) + np.uint32(4))) ^ state) * np.uint32(277803737)
    return (word >> np.uint32(22)) ^ word


def keep_mask(n, seed, p):
    thresh = min(0xFFFFFFFF, math.floor(p * 2**32))
    idx = np.arange(n, dtype=np.uint32)
    return torch.from_numpy((pcg(idx ^ pcg(np.uint32(seed))) >= thresh).astype(np.float32))


cases = {}
# (M, N, K, R, alpha, rslora, dropout, seed): ragged sizes, R in {1, 8, 16}.
for name, (M, N, K, R, alpha, rslora, p, seed) in {
    "r1_nodrop": (5, 7, 13, 1, 8.0, False, 0.0, 0),
    "r8_drop": (9, 17, 33, 8, 16.0, False, 0.1, 1234),
    "r16_rslora_drop": (19, 23, 40, 16, 32.0, True, 0.25, 77),
    "r8_rslora": (6, 11, 21, 8, 16.0, True, 0.0, 5),
}.items():
    g = gen(M * 10007 + N * 101 + K * 7 + R)
    x = torch.randn(M, K, generator=g).requires_grad_(True)
    W = torch.randn(N, K, generator=g) / math.sqrt(K)
    bound = 1 / math.sqrt(K)  # kaiming_uniform_(a=sqrt(5)) bound for lora_A
    A = ((torch.rand(R, K, generator=g) * 2 - 1) * bound).requires_grad_(True)
    B = (0.1 * torch.randn(N, R, generator=g)).requires_grad_(True)
    dY = torch.randn(M, N, generator=g)
    scale = alpha / math.sqrt(R) if rslora else alpha / R

    mask = keep_mask(M * K, seed, p).reshape(M, K)
    keep_scale = torch.tensor(1 / (1 - p), dtype=torch.float32)
    xd = x * (mask * keep_scale)
    U = torch.nn.functional.linear(xd, A)
    y_base = torch.nn.functional.linear(x, W)
    y = y_base + torch.nn.functional.linear(U, B) * scale
    y.backward(dY)
    dx_base = dY @ W
    cases[name] = {
        "M": M, "N": N, "K": K, "R": R, "alpha": alpha, "rslora": int(rslora), "scale": scale,
        "dropout": p, "seed": seed,
        "x": t(x), "W": t(W), "A": t(A), "B": t(B), "dY": t(dY), "y_base": t(y_base), "dx_base": t(dx_base),
        "y": t(y), "U": t(U), "dX": t(x.grad), "dA": t(A.grad), "dB": t(B.grad),
    }
write("lora", cases)
