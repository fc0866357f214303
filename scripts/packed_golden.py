"""PyTorch golden for packed sequences (TRL's padding-free packing), on the tiny checkpoints of
scripts/tiny_models.py.

Run with Debian's torch:  /usr/bin/python3 scripts/packed_golden.py
Writes fixtures/goldens/packed.json.

A packed batch is what TRL's DataCollatorWithFlattening / SFTConfig(packing=True, padding_free=True)
feeds the model: examples back to back in one row, position_ids restarting at 0 at each example,
the first label of each example -100 (so no example predicts the next one's first token), and the
loss the mean over every remaining target. transformers then confines attention to each example
(the reference's position_ids mask). This script checks here, in PyTorch, that the packed batch
gives each example exactly the logits it gets alone, and the same loss and LoRA gradients as the
examples run separately (padding-free equivalence), then stores the packed results for
src/model/packing.gpu.test.ts to match.
"""
import json
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tiny_models import ROOT, forward, loss_sum, module_of, t  # noqa: E402

# Rows of 12 tokens: 6 + 3 + 2 examples and one padding token; 5 + 7. The 6- and 7-token examples
# are longer than tiny-mistral-swa's window of 4.
T = 12
ROWS = [[6, 3, 2], [5, 7]]
CASES = ["tiny-llama", "tiny-mistral-swa"]


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        blob = f.read()
    out = {}
    for name, m in header.items():
        if name == "__metadata__":
            continue
        a, b = m["data_offsets"]
        raw = bytearray(blob[a:b])
        if m["dtype"] == "F32":
            x = torch.frombuffer(raw, dtype=torch.float32)
        else:
            x = torch.frombuffer(raw, dtype=torch.int16).view(torch.bfloat16 if m["dtype"] == "BF16" else torch.float16)
        out[name] = x.to(torch.float32).reshape(m["shape"])
    return out


def packed_case(name):
    d = os.path.join(ROOT, "fixtures", "models", name)
    cfg = json.load(open(os.path.join(d, "config.json")))
    W = read_safetensors(os.path.join(d, "model.safetensors"))
    model_golden = json.load(open(os.path.join(ROOT, "fixtures", "goldens", f"model_{name}.json")))
    r, alpha = model_golden["config"]["r"], model_golden["config"]["alpha"]
    cfg = dict(cfg, lora_r=r, lora_alpha=alpha)
    init = {}
    for key, v in model_golden["init_adapter"].items():
        parts = key.split(".")  # base_model.model.model.layers.{i}.{module}.{proj}.lora_{A|B}.weight
        i, proj, ab = int(parts[4]), parts[6], parts[7]
        init.setdefault((i, proj), {})[ab] = torch.tensor(v["data"], dtype=torch.float32).reshape(v["shape"])
    init = {k: (v["lora_A"], v["lora_B"]) for k, v in init.items()}

    g = torch.Generator().manual_seed(77)
    V = cfg["vocab_size"]
    examples = []  # (ids, labels) per example, labels as the tokenizer step gives them (prompt -100)
    for lengths in ROWS:
        for n in lengths:
            ids = torch.randint(3, V, (n,), generator=g)
            labels = ids.clone()
            labels[: n // 3] = -100  # a prompt part on some examples
            examples.append((ids, labels))
    # Pack: DataCollatorWithFlattening's layout; padding (id 0, label -100, position 0) to T.
    B = len(ROWS)
    ids = torch.zeros(B, T, dtype=torch.long)
    labels = torch.full((B, T), -100, dtype=torch.long)
    pos = torch.zeros(B, T, dtype=torch.long)
    e = 0
    for b, lengths in enumerate(ROWS):
        o = 0
        for n in lengths:
            x, y = examples[e]
            ids[b, o:o + n] = x
            labels[b, o:o + n] = y
            labels[b, o] = -100  # the example's first token is no target of the previous one
            pos[b, o:o + n] = torch.arange(n)
            o += n
            e += 1

    res = {"T": T, "rows": ROWS, "ids": t(ids), "labels": t(labels), "position_ids": t(pos)}
    for quant in ("none", "nf4"):
        lora = {k: (a.clone().requires_grad_(True), bm.clone().requires_grad_(True)) for k, (a, bm) in init.items()}
        logits = forward(cfg, W, lora, ids, quant, position_ids=pos)
        s, n = loss_sum(logits, labels)
        (s / n).backward()
        grads = {k: (a.grad.clone(), bm.grad.clone()) for k, (a, bm) in lora.items()}

        # The same examples one by one (batch 1, no packing): same logits per example, same loss and
        # gradients summed over them.
        alone = {k: (a.clone().requires_grad_(True), bm.clone().requires_grad_(True)) for k, (a, bm) in init.items()}
        total, count, e = 0.0, 0, 0
        sep_loss = 0
        for b, lengths in enumerate(ROWS):
            o = 0
            for m in lengths:
                x, y = examples[e]
                lg = forward(cfg, W, alone, x[None], quant)
                assert torch.allclose(lg[0], logits[b, o:o + m], atol=1e-5, rtol=1e-5), (name, quant, b, o)
                s1, n1 = loss_sum(lg, y[None])
                sep_loss = sep_loss + s1
                count += n1
                o += m
                e += 1
        assert count == n, (count, n)
        (sep_loss / count).backward()
        assert abs(sep_loss.item() / count - (s / n).item()) < 1e-5
        for k, (a, bm) in alone.items():
            assert torch.allclose(a.grad, grads[k][0], atol=1e-6, rtol=1e-4), (name, quant, k, "A")
            assert torch.allclose(bm.grad, grads[k][1], atol=1e-6, rtol=1e-4), (name, quant, k, "B")

        case = {"logits": t(logits), "loss": (s / n).item(), "targets": n, "grads": {}}
        for (i, p), (a, bm) in grads.items():
            key = f"base_model.model.model.layers.{i}.{module_of(p)}.{p}"
            case["grads"][key + ".lora_A.weight"] = t(a)
            case["grads"][key + ".lora_B.weight"] = t(bm)
        res[quant] = case
    return res


if __name__ == "__main__":
    torch.set_num_threads(1)
    out = {name: packed_case(name) for name in CASES}
    path = os.path.join(ROOT, "fixtures", "goldens", "packed.json")
    with open(path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
    print(f"wrote {os.path.relpath(path, ROOT)} ({os.path.getsize(path)} bytes); packed = separate for {', '.join(CASES)}")
