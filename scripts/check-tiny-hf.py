"""Checks a tiny fixture's goldens (scripts/tiny_models.py) against the real transformers and PEFT.

The goldens come from a hand transcription of the HF modeling code run on Debian's torch 1.13; this
script, run with a Python that has torch 2, transformers and peft installed, loads the same
checkpoint with AutoModelForCausalLM (eager attention, f32), wraps it in PEFT's LoRA with the
golden's settings and adapter, and compares logits, loss, every LoRA gradient and the greedy
continuation (model.generate, with its KV cache) with the golden. With --adapter DIR it also loads
an adapter folder written by webtune (adapter_config.json + adapter_model.safetensors) with
PeftModel.from_pretrained and checks its tensors against the golden's.

    python scripts/check-tiny-hf.py tiny-phi3 [--adapter DIR]
"""
import argparse
import json
import os

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.utils import get_peft_model_state_dict
from transformers import AutoConfig, AutoModelForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tensor(g):
    return torch.tensor(g["data"], dtype=torch.float32).reshape(g["shape"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("--adapter")
    a = ap.parse_args()
    golden = json.load(open(os.path.join(ROOT, "fixtures", "goldens", f"model_{a.name}.json")))
    path = os.path.join(ROOT, "fixtures", "models", a.name)
    raw = json.load(open(os.path.join(path, "config.json")))
    rs = raw.get("rope_scaling") or {}
    if rs.get("type") in ("su", "longrope"):
        # Phi3Config renames "su" to "longrope", but transformers 5.17 validates the rope fields
        # before renaming, and wants the top-level original_max_position_embeddings inside them:
        # hand it the equivalent v5 layout.
        raw["rope_scaling"] = {**rs, "type": "longrope", "original_max_position_embeddings": raw["original_max_position_embeddings"]}
    config = AutoConfig.for_model(**raw)

    def load_base():
        return AutoModelForCausalLM.from_pretrained(path, config=config, dtype=torch.float32, attn_implementation="eager")

    model = load_base()
    c = golden["config"]
    cfg = LoraConfig(r=c["r"], lora_alpha=c["alpha"], lora_dropout=0.0, target_modules=c["targets"], task_type="CAUSAL_LM")
    pm = get_peft_model(model, cfg)
    keys = sorted(get_peft_model_state_dict(pm, save_embedding_layers=False).keys())
    want = sorted(golden["init_adapter"].keys())
    assert keys == want, f"PEFT's adapter keys differ:\n{keys[:4]}\n{want[:4]}"
    print(f"PEFT keys: {len(keys)} equal the golden's (e.g. {keys[0]})")

    def load(adapter):
        sd = {k.replace(".lora_A.weight", ".lora_A.default.weight").replace(".lora_B.weight", ".lora_B.default.weight"): tensor(v) for k, v in adapter.items()}
        missing = [k for k in sd if k not in dict(pm.named_parameters())]
        assert not missing, missing[:3]
        with torch.no_grad():
            for n, p in pm.named_parameters():
                if n in sd:
                    p.copy_(sd[n])

    ids, labels = tensor(golden["ids"]).long(), tensor(golden["labels"]).long()
    g = golden["none"]
    load(golden["init_adapter"])
    pm.zero_grad()
    out = pm(input_ids=ids[:2])
    logits = out.logits
    lg = logits[:, :-1, :].reshape(-1, logits.shape[-1])
    tg = labels[:2, 1:].reshape(-1)
    loss = torch.nn.functional.cross_entropy(lg, tg, ignore_index=-100)
    loss.backward()
    d_logits = (logits - tensor(g["logits"])).abs().max().item()
    print(f"logits max |diff| {d_logits:.3g}; loss {loss.item():.7f} vs golden {g['loss']:.7f}")
    assert d_logits < 1e-4 and abs(loss.item() - g["loss"]) < 1e-5
    params = dict(pm.named_parameters())
    worst = 0.0
    for k, v in g["grads"].items():
        n = k.replace(".lora_A.weight", ".lora_A.default.weight").replace(".lora_B.weight", ".lora_B.default.weight")
        ref = tensor(v)
        worst = max(worst, ((params[n].grad - ref).abs().max() / ref.abs().max().clamp(min=1e-12)).item())
    print(f"{len(g['grads'])} LoRA gradients: worst max |diff| / max |golden| {worst:.3g}")
    assert worst < 1e-4
    load(g["adapter"])
    prompt = torch.tensor([g["greedy"]["prompt"]])
    n = len(g["greedy"]["tokens"])
    runs = {}
    with torch.no_grad():
        for cache in (False, True):
            seq = pm.generate(input_ids=prompt, max_new_tokens=n, min_new_tokens=n, do_sample=False, eos_token_id=None, pad_token_id=0, use_cache=cache)
            runs[cache] = seq[0, prompt.shape[1]:].tolist()
    print(f"greedy, generate without a cache (whole forward each step): {runs[False]} vs golden {g['greedy']['tokens']}")
    assert runs[False] == g["greedy"]["tokens"]
    # With its KV cache, Phi3ForCausalLM drops the cache when a LongRoPE sequence first passes the
    # original context, meaning to recompute it; report whether generate's cached path agrees.
    print(f"greedy, generate with its KV cache: {runs[True]} ({'equal' if runs[True] == runs[False] else 'differs'})")
    if a.adapter:
        base = load_base()
        loaded = PeftModel.from_pretrained(base, a.adapter)
        sd = get_peft_model_state_dict(loaded, save_embedding_layers=False)
        assert sorted(sd) == want, f"adapter folder keys differ: {sorted(sd)[:2]} vs {want[:2]}"
        assert all(torch.equal(sd[k], tensor(g["adapter"][k])) for k in want), "adapter folder values differ"
        print(f"PeftModel.from_pretrained({a.adapter}): {len(sd)} tensors, target_modules {sorted(loaded.peft_config['default'].target_modules)}")
    print("ok")


if __name__ == "__main__":
    main()
