"""Shared helpers for the PyTorch golden scripts.

Each script scripts/goldens/<kernel>.py builds a few small cases with torch (Debian's python3-torch,
run with /usr/bin/python3), and writes fixtures/goldens/<kernel>.json:
    { "<case>": { "<tensor>": {"shape": [...], "data": [...]}, "<scalar>": 1.5 } }
Inputs are stored beside outputs, so the TypeScript twins run on exactly the same numbers.
"""
import json
import os
import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "fixtures", "goldens")


def t(x):
    """A tensor as {shape, data}. Floats are converted to float32 and written as the shortest decimal
    that reads back to the same float32 (half the size of the double's repr, and just as exact)."""
    x = x.detach().cpu().contiguous()
    if x.dtype.is_floating_point:
        data = [float(repr(v)) for v in x.to(torch.float32).reshape(-1).numpy()]
    else:
        data = x.reshape(-1).tolist()
    return {"shape": list(x.shape), "data": data}


def write(name, cases):
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, name + ".json")
    with open(path, "w") as f:
        json.dump(cases, f, separators=(",", ":"))
    print(f"wrote {os.path.relpath(path, ROOT)} ({os.path.getsize(path)} bytes, {len(cases)} cases)")


def gen(seed):
    g = torch.Generator().manual_seed(seed)
    return g
