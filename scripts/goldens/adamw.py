"""Goldens for adamw / grad_norm: torch.optim.AdamW(foreach=False) with clip_grad_norm_, 5 steps.

Two parameter tensors (a LoRA-like (R, K) matrix and a vector) get given gradients each step; per
case: gradients are multiplied by grad_scale, then clip_grad_norm_(max_norm) (skipped when
max_norm == 0: clipping off), then optimizer.step(). Stored flat, in parameter order (the kernels see
one flat arena): the initial params, and per step s = 1..5 the raw gradient grad_s, the total norm
norm_s of the scaled gradient (what clip_grad_norm_ returns), and param_s, m_s (exp_avg), v_s
(exp_avg_sq) after the step.
"""
import torch
from common import t, write, gen

STEPS = 5


def flat(ts):
    return torch.cat([x.detach().reshape(-1) for x in ts])


cases = {}
for name, (lr, b1, b2, eps, wd, max_norm, grad_scale) in {
    "clip": (1e-2, 0.9, 0.999, 1e-8, 0.1, 1.0, 1.0),
    "noclip": (3e-3, 0.8, 0.99, 1e-6, 0.01, 100.0, 1.0),
    "off": (1e-2, 0.9, 0.999, 1e-8, 0.1, 0.0, 1.0),
    "clip_scaled": (5e-3, 0.9, 0.95, 1e-8, 0.05, 0.5, 0.25),
    # eps comparable to sqrt(v): tells eps-after-sqrt and the bias-correction order apart.
    "eps_large": (1e-2, 0.9, 0.999, 1e-2, 0.1, 0.0, 0.01),
}.items():
    g = gen(sum(map(ord, name)))
    params = [torch.randn(4, 9, generator=g).requires_grad_(True), torch.randn(11, generator=g).requires_grad_(True)]
    opt = torch.optim.AdamW(params, lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd, foreach=False)
    case = {"lr": lr, "beta1": b1, "beta2": b2, "eps": eps, "weightDecay": wd, "maxGradNorm": max_norm,
            "gradScale": grad_scale, "steps": STEPS, "param_0": t(flat(params))}
    for s in range(1, STEPS + 1):
        grads = [2 * torch.randn(p.shape, generator=g) for p in params]
        case[f"grad_{s}"] = t(flat(grads))
        for p, gr in zip(params, grads):
            p.grad = gr * grad_scale
        if max_norm > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        else:
            norm = torch.norm(torch.stack([torch.norm(p.grad.detach(), 2) for p in params]), 2)
        case[f"norm_{s}"] = float(norm)
        opt.step()
        case[f"param_{s}"] = t(flat(params))
        case[f"m_{s}"] = t(flat([opt.state[p]["exp_avg"] for p in params]))
        case[f"v_{s}"] = t(flat([opt.state[p]["exp_avg_sq"] for p in params]))
    cases[name] = case
write("adamw", cases)
