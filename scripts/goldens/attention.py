"""Goldens for attention_forward / attention_backward: the HF eager attention path
(transformers `eager_attention_forward` in modeling_llama.py) in float32, autograd for dq, dk, dv.

Layout as the kernels see it: q (B, T, H, D), k and v (B, T, Hkv, D), o (B, T, H, D), lse (B, H, T).
"""
import torch
from common import t, write, gen


def repeat_kv(x, n_rep):
    # transformers repeat_kv: (B, Hkv, T, D) -> (B, Hkv * n_rep, T, D); KV head j serves Q heads
    # j*n_rep .. (j+1)*n_rep-1 (expand then reshape).
    B, Hkv, T, D = x.shape
    if n_rep == 1:
        return x
    return x[:, :, None, :, :].expand(B, Hkv, n_rep, T, D).reshape(B, Hkv * n_rep, T, D)


def eager_attention(q, k, v, scaling):
    # q (B, T, H, D) -> (B, H, T, D) as after q_proj(...).view(...).transpose(1, 2)
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    n_rep = q.shape[1] // k.shape[1]
    k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)
    T = q.shape[2]
    scores = torch.matmul(q, k.transpose(2, 3)) * scaling
    # HF's causal mask: finfo.min above the diagonal, added to the scores.
    mask = torch.triu(torch.full((T, T), torch.finfo(torch.float32).min), diagonal=1)
    scores = scores + mask
    w = torch.nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
    o = torch.matmul(w, v)                      # (B, H, T, D)
    lse = torch.logsumexp(scores, dim=-1)       # (B, H, T), log-sum-exp of the scaled, masked scores
    return o.transpose(1, 2).contiguous(), lse


cases = {}
for name, (B, T, H, Hkv, D) in {
    "mha": (1, 5, 2, 2, 8),
    "gqa": (2, 13, 4, 2, 16),
    "mqa_ragged": (1, 33, 3, 1, 24),
}.items():
    g = gen(B * 100000 + T * 1000 + H * 100 + Hkv * 10 + D)
    q = torch.randn(B, T, H, D, generator=g).requires_grad_(True)
    k = torch.randn(B, T, Hkv, D, generator=g).requires_grad_(True)
    v = torch.randn(B, T, Hkv, D, generator=g).requires_grad_(True)
    do = torch.randn(B, T, H, D, generator=g)
    scale = D ** -0.5
    o, lse = eager_attention(q, k, v, scale)
    o.backward(do)
    cases[name] = {
        "B": B, "T": T, "H": H, "Hkv": Hkv, "D": D, "scale": scale,
        "q": t(q), "k": t(k), "v": t(v), "do": t(do),
        "o": t(o), "lse": t(lse), "dq": t(q.grad), "dk": t(k.grad), "dv": t(v.grad),
    }
write("attention", cases)
