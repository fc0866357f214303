"""Goldens for cross_entropy: F.cross_entropy(logits, targets, ignore_index=-100, reduction='mean')
in float32 and its gradient by autograd (the mean over unmasked targets, as Transformers' causal-LM
loss and TRL compute it). Per-row losses come from reduction='none'. V is ragged (1000, 517)."""
import torch
import torch.nn.functional as F
from common import t, write, gen

cases = {}
for name, (N, V, scale, ignored) in {
    "v1000": (4, 1000, 2.0, [1, 3]),
    "v517": (3, 517, 3.0, [0]),
    # Logits of magnitude ~50: exp overflows f32 without the max subtraction.
    "v517_large": (3, 517, 50.0, [2]),
}.items():
    g = gen(N * 10000 + V)
    logits = (scale * torch.randn(N, V, generator=g, dtype=torch.float32)).requires_grad_(True)
    targets = torch.randint(0, V, (N,), generator=g, dtype=torch.int64)
    targets[ignored] = -100
    loss = F.cross_entropy(logits, targets, ignore_index=-100, reduction="mean")
    loss.backward()
    rows = F.cross_entropy(logits.detach(), targets, ignore_index=-100, reduction="none")
    cases[name] = {
        "N": N, "V": V, "logits": t(logits), "targets": t(targets), "loss_rows": t(rows),
        "loss": loss.item(), "dlogits": t(logits.grad),
    }
write("cross_entropy", cases)
