"""Goldens for swiglu_forward / swiglu_backward: h = F.silu(g) * u (LlamaMLP's act_fn(gate) * up) in
float32, dg and du by autograd. The "large" case reaches |g| ~ 100 to check silu's stable form.
The geglu_* cases are Gemma's GeGLU, F.gelu(g, approximate="tanh") * u (GemmaMLP with
hidden_activation gelu_pytorch_tanh), marked "act": "gelu_tanh"."""
import torch
import torch.nn.functional as F
from common import t, write, gen

cases = {}
for name, (N, Fd, scale) in {"small": (2, 8, 3.0), "ragged": (3, 131, 4.0), "large": (2, 37, 100.0)}.items():
    g_ = gen(N * 1000 + Fd)
    g = (scale * torch.randn(N, Fd, generator=g_, dtype=torch.float32)).requires_grad_(True)
    u = torch.randn(N, Fd, generator=g_, dtype=torch.float32).requires_grad_(True)
    dh = torch.randn(N, Fd, generator=g_, dtype=torch.float32)
    h = F.silu(g) * u
    h.backward(dh)
    cases[name] = {"N": N, "F": Fd, "g": t(g), "u": t(u), "dh": t(dh), "h": t(h), "dg": t(g.grad), "du": t(u.grad)}
for name, (N, Fd, scale) in {"geglu_small": (2, 8, 3.0), "geglu_ragged": (3, 131, 4.0), "geglu_large": (2, 37, 100.0)}.items():
    g_ = gen(N * 1000 + Fd + 7)
    g = (scale * torch.randn(N, Fd, generator=g_, dtype=torch.float32)).requires_grad_(True)
    u = torch.randn(N, Fd, generator=g_, dtype=torch.float32).requires_grad_(True)
    dh = torch.randn(N, Fd, generator=g_, dtype=torch.float32)
    h = F.gelu(g, approximate="tanh") * u
    h.backward(dh)
    cases[name] = {"N": N, "F": Fd, "act": "gelu_tanh", "g": t(g), "u": t(u), "dh": t(dh), "h": t(h), "dg": t(g.grad), "du": t(u.grad)}
write("swiglu", cases)
