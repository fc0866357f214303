"""Goldens for rmsnorm_forward / rmsnorm_backward: HF LlamaRMSNorm in float32, autograd for dx."""
import torch
from common import t, write, gen


def rmsnorm(x, w, eps):
    # transformers LlamaRMSNorm.forward, float32 input
    var = x.pow(2).mean(-1, keepdim=True)
    return w * (x * torch.rsqrt(var + eps))


cases = {}
for name, (N, C, eps) in {"small": (3, 8, 1e-6), "ragged": (5, 131, 1e-5), "wide": (2, 300, 1e-6)}.items():
    g = gen(N * 1000 + C)
    x = torch.randn(N, C, generator=g, dtype=torch.float32).requires_grad_(True)
    w = (1 + 0.1 * torch.randn(C, generator=g, dtype=torch.float32))
    dy = torch.randn(N, C, generator=g, dtype=torch.float32)
    y = rmsnorm(x, w, eps)
    y.backward(dy)
    rstd = torch.rsqrt(x.detach().pow(2).mean(-1) + eps)
    cases[name] = {"N": N, "C": C, "eps": eps, "x": t(x), "w": t(w), "dy": t(dy), "y": t(y), "rstd": t(rstd), "dx": t(x.grad)}
write("rmsnorm", cases)
