"""Tiny random LLaMA-family models in Hugging Face layout, and PyTorch parity goldens for them.

Run with Debian's torch:  /usr/bin/python3 scripts/tiny_models.py
Writes fixtures/models/<name>/{config.json, model.safetensors} and fixtures/goldens/model_<name>.json.

There is no `transformers` package on this machine, so the reference below re-implements the HF
modeling code it stands for (LlamaForCausalLM / MistralForCausalLM / Qwen2ForCausalLM /
 Qwen3ForCausalLM / Phi3ForCausalLM / GemmaForCausalLM / Gemma2ForCausalLM / Gemma3ForCausalLM, eager attention, fp32), PEFT's LoRA layer (y = W x + b + s * B A x, dropout 0 here because no RNG can be
shared with torch) and bitsandbytes' NF4 round trip (torch reference quantize_4bit, blocksize 64).
Each piece names the upstream function it follows. Goldens: logits and loss for a batch, every LoRA
gradient, and the loss, lr, grad-norm and adapter after 5 AdamW steps with gradient accumulation,
clipping and a warmup+linear schedule; plus a greedy continuation.
"""
import json
import math
import os
import struct

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ---------------------------------------------------------------- NF4 (bitsandbytes torch reference)
NF4 = torch.tensor([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
                    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
                    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
                    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0], dtype=torch.float32)


def nf4_roundtrip(w, blocksize=64):
    """dequantize_4bit(quantize_4bit(w)) as bitsandbytes' default backend computes it (f32)."""
    flat = w.detach().reshape(-1).to(torch.float32)
    n = flat.numel()
    pad = (-n) % blocksize
    blocks = torch.nn.functional.pad(flat, (0, pad)).reshape(-1, blocksize)
    absmax = blocks.abs().max(dim=1).values
    scaled = torch.clamp(blocks * (1.0 / absmax.clamp(min=1e-38)).unsqueeze(1), -1, 1)
    codes = torch.bucketize(scaled, (NF4[:-1] + NF4[1:]) / 2)
    deq = (NF4[codes] * absmax.unsqueeze(1)).reshape(-1)[:n]
    return deq.reshape(w.shape)


# ---------------------------------------------------------------- RoPE (modeling_rope_utils)
def inv_freq_for(cfg, seq_len=None):
    """(inv_freq, attention_scaling) of a forward whose max(position_ids) + 1 is seq_len."""
    D = cfg["head_dim"]
    base = cfg["rope_theta"]
    shape = torch.arange(0, D, 2, dtype=torch.int64).float() / D
    inv = 1.0 / (base ** shape)
    rs = cfg.get("rope_scaling")
    if rs is None:
        return inv, 1.0
    kind = rs.get("rope_type", rs.get("type"))
    if kind in ("longrope", "su"):  # Phi3Config renames "su" to "longrope"
        # _compute_longrope_parameters + dynamic_rope_update's longrope_frequency_update: Phi3Config's
        # top-level original_max_position_embeddings sets the scale; the long factors serve a forward
        # whose sequence passes it, the short ones any other; cos and sin are scaled either way.
        orig = cfg["original_max_position_embeddings"]
        factor = cfg["max_position_embeddings"] / orig
        attention = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(orig))
        ext = torch.tensor(rs["long_factor"] if seq_len and seq_len > orig else rs["short_factor"], dtype=torch.float32)
        return 1.0 / (ext * base ** shape), attention
    return inv_freq_scaled(inv, rs, kind), 1.0


def inv_freq_scaled(inv, rs, kind):
    if kind == "linear":
        return inv / rs["factor"]
    if kind == "llama3":  # _compute_llama3_parameters
        factor, lff, hff, old = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"], rs["original_max_position_embeddings"]
        low_wl, high_wl = old / lff, old / hff
        wavelen = 2 * math.pi / inv
        inv_l = torch.where(wavelen > low_wl, inv / factor, inv)
        smooth = (old / wavelen - lff) / (hff - lff)
        smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
        is_medium = ~(wavelen < high_wl) * ~(wavelen > low_wl)
        return torch.where(is_medium, smoothed, inv_l)
    raise ValueError(rs)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


# ---------------------------------------------------------------- the model (HF eager, fp32)
LINEARS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def linear_shapes(cfg):
    C, F, H, Hkv, D = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    if cfg["model_type"] == "phi3":  # Phi3Attention.qkv_proj, Phi3MLP.gate_up_proj
        return {"qkv_proj": ((H + 2 * Hkv) * D, C), "o_proj": (C, H * D), "gate_up_proj": (2 * F, C), "down_proj": (C, F)}
    return {"q_proj": (H * D, C), "k_proj": (Hkv * D, C), "v_proj": (Hkv * D, C), "o_proj": (C, H * D),
            "gate_proj": (F, C), "up_proj": (F, C), "down_proj": (C, F)}


def module_of(name):
    return "self_attn" if name in ("q_proj", "k_proj", "v_proj", "o_proj", "qkv_proj") else "mlp"


GEMMA = ("gemma", "gemma2", "gemma3_text")


def layer_windows(cfg):
    """Each layer's sliding window (0 = full causal): MistralModel slides every layer when
    sliding_window is set; Qwen2Config / Qwen3Config mark the layers from max_window_layers on as
    "sliding_attention" when use_sliding_window is true. Gemma2Config slides in layers 0, 2, ...;
    Gemma3TextConfig in all but every sliding_window_pattern-th (default 6); layer_types wins."""
    L = cfg["num_hidden_layers"]
    if cfg["model_type"] in ("gemma2", "gemma3_text"):
        w = cfg.get("sliding_window", 4096)
        types = cfg.get("layer_types")
        if types is None:
            pattern = 2 if cfg["model_type"] == "gemma2" else cfg.get("sliding_window_pattern", 6)
            types = ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(L)]
        return [w if t == "sliding_attention" else 0 for t in types]
    if cfg["model_type"] == "mistral":
        return [cfg.get("sliding_window", 4096) or 0] * L
    if cfg["model_type"] == "phi3":  # Phi3Model: create_sliding_window_causal_mask when sliding_window is set
        return [cfg.get("sliding_window") or 0] * L
    if cfg["model_type"] in ("qwen2", "qwen3") and cfg.get("use_sliding_window", False):
        w = cfg.get("sliding_window", 4096) or 0
        return [w if i >= cfg.get("max_window_layers", 28) else 0 for i in range(L)]
    return [0] * L


def forward(cfg, W, lora, ids, quant, position_ids=None):
    """Logits (B, T, V). W: HF state dict (f32). lora: {(layer, proj): (A, B)} with requires_grad.
    position_ids (B, T): packed rows (padding-free), positions restarting at 0 at each example; the
    mask is then block-causal as masking_utils builds it from position_ids (find_packed_sequence_indices:
    a new sequence wherever the position does not follow the previous one)."""
    B, T = ids.shape
    C, H, Hkv, D = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps, scaling = cfg["rms_norm_eps"], cfg["lora_alpha"] / cfg["lora_r"]
    base = {k: (nf4_roundtrip(v) if quant == "nf4" and k.endswith("_proj.weight") else v) for k, v in W.items()}

    mt = cfg["model_type"]
    gemma = mt in GEMMA
    later = mt in ("gemma2", "gemma3_text")

    def rms(x, w):  # LlamaRMSNorm; GemmaRMSNorm scales by (1 + w) in f32
        var = x.pow(2).mean(-1, keepdim=True)
        return (1.0 + w if gemma else w) * (x * torch.rsqrt(var + eps))

    def lin(x, layer, proj):  # bnb Linear4bit (compute f32) + PEFT lora.Linear
        p = f"model.layers.{layer}.{module_of(proj)}.{proj}"
        y = x @ base[p + ".weight"].t()
        if p + ".bias" in base:
            y = y + base[p + ".bias"]
        if (layer, proj) in lora:
            A, Bm = lora[(layer, proj)]
            y = y + scaling * ((x @ A.t()) @ Bm.t())
        return y

    # (T, D) tables, or (B, 1, T, D) with position_ids; LongRoPE scales cos and sin by its attention factor.
    pos = torch.arange(T, dtype=torch.float32) if position_ids is None else position_ids.to(torch.float32)[:, None]

    def rope_tables(inv_attention):
        inv, attention = inv_attention
        freqs = pos[..., None] * inv
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos() * attention, emb.sin() * attention

    cos_sin = rope_tables(inv_freq_for(cfg, T))
    # Gemma3TextModel.rotary_emb_local: rope_local_base_freq with the default rope type, for the
    # sliding layers.
    local = cfg.get("rope_local_base_freq") if mt == "gemma3_text" else None
    cos_sin_local = rope_tables(inv_freq_for(dict(cfg, rope_theta=local, rope_scaling=None), T)) if local else cos_sin
    mask = torch.full((T, T), float("-inf")).triu(1)
    if position_ids is not None:
        seq = torch.cumsum(torch.cat([torch.ones(B, 1, dtype=torch.long), (position_ids[:, 1:] != position_ids[:, :-1] + 1).long()], 1), 1)
        mask = mask + torch.where(seq[:, :, None] == seq[:, None, :], 0.0, float("-inf"))[:, None]
    # masking_utils.sliding_window_overlay: key j is visible to query i iff j > i - window.
    windows = layer_windows(cfg)
    masks = [mask + torch.full((T, T), float("-inf")).tril(-w) if w else mask for w in windows]
    # Gemma2Attention / Gemma3Attention: scaling = query_pre_attn_scalar ** -0.5; softcap before the mask.
    attn_scale = cfg["query_pre_attn_scalar"] ** -0.5 if later else D ** -0.5
    softcap = cfg.get("attn_logit_softcapping") if later else None

    h = base["model.embed_tokens.weight"][ids]
    if gemma:  # GemmaModel: normalizer = torch.tensor(hidden_size ** 0.5, dtype=hidden_states.dtype)
        h = h * torch.tensor(C ** 0.5, dtype=torch.float32)
    for i in range(cfg["num_hidden_layers"]):
        x = rms(h, base[f"model.layers.{i}.input_layernorm.weight"])
        if mt == "phi3":  # Phi3Attention: one qkv_proj, sliced into q, k, v
            qkv = lin(x, i, "qkv_proj")
            q, k, vf = qkv[..., :H * D], qkv[..., H * D:(H + Hkv) * D], qkv[..., (H + Hkv) * D:]
            q, k = q.reshape(B, T, H, D), k.reshape(B, T, Hkv, D)
        else:
            q = lin(x, i, "q_proj").view(B, T, H, D)
            k = lin(x, i, "k_proj").view(B, T, Hkv, D)
            vf = lin(x, i, "v_proj")
        if mt in ("qwen3", "gemma3_text"):  # q_norm / k_norm over head_dim, before RoPE
            q = rms(q, base[f"model.layers.{i}.self_attn.q_norm.weight"])
            k = rms(k, base[f"model.layers.{i}.self_attn.k_norm.weight"])
        q = q.transpose(1, 2)
        k = k.transpose(1, 2)
        v = vf.reshape(B, T, Hkv, D).transpose(1, 2)
        cos, sin = cos_sin_local if windows[i] else cos_sin
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(H // Hkv, dim=1)  # repeat_kv
        v = v.repeat_interleave(H // Hkv, dim=1)
        att = (q @ k.transpose(-1, -2)) * attn_scale
        if softcap is not None:
            att = torch.tanh(att / softcap) * softcap
        att = torch.softmax(att + masks[i], dim=-1, dtype=torch.float32)
        o = (att @ v).transpose(1, 2).reshape(B, T, H * D)
        if later:  # Gemma2DecoderLayer: norms on each sublayer's output, and before the MLP
            h = h + rms(lin(o, i, "o_proj"), base[f"model.layers.{i}.post_attention_layernorm.weight"])
            x = rms(h, base[f"model.layers.{i}.pre_feedforward_layernorm.weight"])
        else:
            h = h + lin(o, i, "o_proj")
            x = rms(h, base[f"model.layers.{i}.post_attention_layernorm.weight"])
        if gemma:  # GemmaMLP: gelu_pytorch_tanh
            m = torch.nn.functional.gelu(lin(x, i, "gate_proj"), approximate="tanh") * lin(x, i, "up_proj")
        elif mt == "phi3":  # Phi3MLP: gate, up = gate_up_proj(x).chunk(2); up * silu(gate)
            gate, up = lin(x, i, "gate_up_proj").chunk(2, dim=-1)
            m = up * torch.nn.functional.silu(gate)
        else:
            m = torch.nn.functional.silu(lin(x, i, "gate_proj")) * lin(x, i, "up_proj")
        if later:
            h = h + rms(lin(m, i, "down_proj"), base[f"model.layers.{i}.post_feedforward_layernorm.weight"])
        else:
            h = h + lin(m, i, "down_proj")
    h = rms(h, base["model.norm.weight"])
    head = base["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else base["lm_head.weight"]
    logits = h @ head.t()
    cap = cfg.get("final_logit_softcapping") if later else None
    if cap is not None:  # Gemma2ForCausalLM
        logits = torch.tanh(logits / cap) * cap
    return logits


def loss_sum(logits, labels):
    """Sum of next-token CE over unmasked targets (labels shifted inside, -100 ignored), and the count."""
    lg = logits[:, :-1, :].reshape(-1, logits.shape[-1])
    tg = labels[:, 1:].reshape(-1)
    s = torch.nn.functional.cross_entropy(lg, tg, ignore_index=-100, reduction="sum")
    return s, int((tg != -100).sum())


# ---------------------------------------------------------------- safetensors writer
def write_safetensors(path, tensors, dtype):
    tname = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}[dtype]
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        b = tensors[name].detach().to(dtype).contiguous()
        raw = b.view(torch.int16).numpy().tobytes() if dtype != torch.float32 else b.numpy().tobytes()
        header[name] = {"dtype": tname, "shape": list(b.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    header = {"__metadata__": {"format": "pt"}, **header}
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((-len(hb)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for r in blobs:
            f.write(r)


def t(x):
    """Floats as the shortest decimal that reads back to the same float32 (see goldens/common.py)."""
    x = x.detach().contiguous()
    if x.dtype.is_floating_point:
        data = [float(repr(v)) for v in x.to(torch.float32).reshape(-1).numpy()]
    else:
        data = x.reshape(-1).tolist()
    return {"shape": list(x.shape), "data": data}


# ---------------------------------------------------------------- the fixtures
MODELS = {
    # Llama 3.2 style: GQA, untied head, llama3 rope scaling, BF16 on disk.
    "tiny-llama": dict(arch="LlamaForCausalLM", model_type="llama", tie=False, bias=False, dtype=torch.bfloat16,
                       rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                     "original_max_position_embeddings": 64}, rope_theta=500000.0, H=4, Hkv=2),
    # Qwen2.5 style: q/k/v biases, tied embeddings, F16 on disk, MHA.
    "tiny-qwen2": dict(arch="Qwen2ForCausalLM", model_type="qwen2", tie=True, bias=True, dtype=torch.float16,
                       rope_scaling=None, rope_theta=1000000.0, H=4, Hkv=4),
    # SmolLM2 / Mistral style: tied, GQA 4:1, linear rope scaling, F32 on disk.
    "tiny-mistral": dict(arch="MistralForCausalLM", model_type="mistral", tie=True, bias=False, dtype=torch.float32,
                         rope_scaling={"rope_type": "linear", "factor": 2.0}, rope_theta=10000.0, H=4, Hkv=1),
    # Qwen3 style: per-head q/k RMSNorm, no biases, GQA 2:1, head_dim 24 != hidden / heads, untied
    # head (Qwen3-4B and larger; 0.6B/1.7B tie), BF16 on disk.
    "tiny-qwen3": dict(arch="Qwen3ForCausalLM", model_type="qwen3", tie=False, bias=False, dtype=torch.bfloat16,
                       rope_scaling=None, rope_theta=1000000.0, H=4, Hkv=2, D=24),
    # Sliding windows shorter than the 9-token batch and the 12-token greedy sequence: Mistral slides
    # in every layer; Qwen2 with use_sliding_window slides from max_window_layers (1) on, so layer 0
    # stays full.
    "tiny-mistral-swa": dict(arch="MistralForCausalLM", model_type="mistral", tie=True, bias=False, dtype=torch.float32,
                             rope_scaling=None, rope_theta=10000.0, H=4, Hkv=2, extra={"sliding_window": 4}),
    "tiny-qwen2-swa": dict(arch="Qwen2ForCausalLM", model_type="qwen2", tie=True, bias=True, dtype=torch.float32,
                           rope_scaling=None, rope_theta=1000000.0, H=4, Hkv=4,
                           extra={"use_sliding_window": True, "sliding_window": 3, "max_window_layers": 1}),
    # Gemma 2 style: softcaps small enough to bite on these tiny scores and logits, head_dim 24 and
    # query_pre_attn_scalar 20 (neither C / H nor head_dim), a 3-token window in layer 0 (Gemma2Config
    # slides every other layer) shorter than the 9- and 12-token sequences, tied head, F32 on disk.
    "tiny-gemma2": dict(arch="Gemma2ForCausalLM", model_type="gemma2", tie=True, bias=False, dtype=torch.float32,
                        rope_scaling=None, rope_theta=10000.0, H=4, Hkv=2, D=24,
                        extra={"query_pre_attn_scalar": 20, "sliding_window": 3, "attn_logit_softcapping": 1.5,
                               "final_logit_softcapping": 3.0}),
    # Gemma 3 style: q/k norms, layer 0 sliding (window 4, old-style sliding_window_pattern 2) with
    # rope_local_base_freq, layer 1 global with linear rope scaling (as gemma-3-4b), no softcaps,
    # BF16 on disk.
    "tiny-gemma3": dict(arch="Gemma3ForCausalLM", model_type="gemma3_text", tie=True, bias=False, dtype=torch.bfloat16,
                        rope_scaling={"rope_type": "linear", "factor": 8.0}, rope_theta=1000000.0, H=4, Hkv=2, D=16,
                        extra={"query_pre_attn_scalar": 16, "sliding_window": 4, "sliding_window_pattern": 2,
                               "rope_local_base_freq": 10000.0, "attn_logit_softcapping": None, "final_logit_softcapping": None}),
    # Gemma (1) style: GeGLU, (1 + w) norms, the scaled embedding, MQA, no sandwich norms, BF16.
    "tiny-gemma": dict(arch="GemmaForCausalLM", model_type="gemma", tie=True, bias=False, dtype=torch.bfloat16,
                       rope_scaling=None, rope_theta=10000.0, H=4, Hkv=1, D=16),
    # Phi-3.5 style: fused qkv_proj (GQA 2:1, as Phi-3-medium) and gate_up_proj, BF16 on disk, untied,
    # LongRoPE ("su", its older name) with an original context of 8: the 9-token batches take the
    # long factors and the greedy continuation crosses from short to long; a sliding window of 5.
    # seed 6: the index it was generated at, before the Gemma fixtures were listed ahead of it.
    "tiny-phi3": dict(arch="Phi3ForCausalLM", model_type="phi3", tie=False, bias=False, dtype=torch.bfloat16,
                      rope_scaling={"type": "su",
                                    "short_factor": [1.0, 1.1, 1.3, 1.7, 2.2, 3.0, 4.1, 5.5],
                                    "long_factor": [1.0, 1.6, 2.9, 5.2, 8.7, 13.0, 19.5, 27.0]},
                      rope_theta=10000.0, H=4, Hkv=2,
                      extra={"original_max_position_embeddings": 8, "sliding_window": 5, "resid_pdrop": 0.0,
                             "embd_pdrop": 0.0, "attention_dropout": 0.0, "pad_token_id": 0},
                      seed=6),
}


def build(name, spec, seed):
    g = torch.Generator().manual_seed(seed)
    C, F, L, V, D = 64, 96, 2, 256, spec.get("D", 16)
    cfg = {
        "architectures": [spec["arch"]], "model_type": spec["model_type"], "vocab_size": V, "hidden_size": C,
        "intermediate_size": F, "num_hidden_layers": L, "num_attention_heads": spec["H"],
        "num_key_value_heads": spec["Hkv"], "head_dim": D, "rms_norm_eps": 1e-5, "rope_theta": spec["rope_theta"],
        "max_position_embeddings": 128, "tie_word_embeddings": spec["tie"],
        "hidden_act": "gelu_pytorch_tanh" if spec["model_type"] in GEMMA else "silu",
        "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}[spec["dtype"]],
    }
    if spec["rope_scaling"]:
        cfg["rope_scaling"] = spec["rope_scaling"]
    if spec["model_type"] == "llama":
        cfg["attention_bias"] = False
        cfg["mlp_bias"] = False
    if spec["model_type"] == "qwen3":
        cfg["attention_bias"] = False
        cfg["use_sliding_window"] = False
    if spec["model_type"] in ("gemma2", "gemma3_text"):
        cfg["hidden_activation"] = "gelu_pytorch_tanh"
        cfg["attention_bias"] = False
    cfg.update(spec.get("extra", {}))
    gemma = spec["model_type"] in GEMMA
    # Gemma norms hold w of (1 + w), near 0; the others hold w, near 1.
    one = 0.0 if gemma else 1.0
    W = {"model.embed_tokens.weight": torch.randn(V, C, generator=g) * (0.1 if gemma else 0.5), "model.norm.weight": one + 0.1 * torch.randn(C, generator=g)}
    if not spec["tie"]:
        W["lm_head.weight"] = torch.randn(V, C, generator=g) * 0.1
    shapes = linear_shapes(cfg)
    for i in range(L):
        W[f"model.layers.{i}.input_layernorm.weight"] = one + 0.1 * torch.randn(C, generator=g)
        W[f"model.layers.{i}.post_attention_layernorm.weight"] = one + 0.1 * torch.randn(C, generator=g)
        if spec["model_type"] in ("gemma2", "gemma3_text"):
            for n in ("pre_feedforward_layernorm", "post_feedforward_layernorm"):
                W[f"model.layers.{i}.{n}.weight"] = one + 0.1 * torch.randn(C, generator=g)
        for p, (o, k) in shapes.items():
            W[f"model.layers.{i}.{module_of(p)}.{p}.weight"] = torch.randn(o, k, generator=g) / math.sqrt(k)
            if spec["bias"] and p in ("q_proj", "k_proj", "v_proj"):
                W[f"model.layers.{i}.{module_of(p)}.{p}.bias"] = 0.1 * torch.randn(o, generator=g)
        if spec["model_type"] in ("qwen3", "gemma3_text"):
            for n in ("q_norm", "k_norm"):
                W[f"model.layers.{i}.self_attn.{n}.weight"] = one + 0.1 * torch.randn(D, generator=g)
    # The file holds the weights in the stated dtype; the reference computes on exactly those values.
    W = {k: v.to(spec["dtype"]).to(torch.float32) for k, v in W.items()}
    out = os.path.join(ROOT, "fixtures", "models", name)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    write_safetensors(os.path.join(out, "model.safetensors"), W, spec["dtype"])
    return cfg, W, g


def goldens(name, cfg, W, g):
    r = 4
    cfg = dict(cfg, lora_r=r, lora_alpha=8)
    shapes = linear_shapes(cfg)
    targets = list(shapes)  # all-linear: every linear module of the model, as PEFT names it
    # Non-zero B so that every gradient is informative (PEFT starts B at zero, which makes dA = 0).
    init = {}
    for i in range(cfg["num_hidden_layers"]):
        for p in targets:
            o, k = shapes[p]
            init[(i, p)] = (torch.randn(r, k, generator=g) / math.sqrt(k), torch.randn(o, r, generator=g) * 0.1)
    V = cfg["vocab_size"]
    # Four sequences of 9 tokens; the first 3 positions of some are prompt tokens (-100 labels).
    ids = torch.randint(3, V, (4, 9), generator=g)
    labels = ids.clone()
    labels[0, :3] = -100
    labels[2, :4] = -100
    res = {"config": {"r": r, "alpha": 8, "targets": targets}, "ids": t(ids), "labels": t(labels)}
    for quant in ("none", "nf4"):
        lora = {k: (a.clone().requires_grad_(True), b.clone().requires_grad_(True)) for k, (a, b) in init.items()}
        # --- one forward/backward on the first two sequences
        logits = forward(cfg, W, lora, ids[:2], quant)
        s, n = loss_sum(logits, labels[:2])
        loss = s / n
        loss.backward()
        case = {"logits": t(logits), "loss": loss.item(), "grads": {}}
        for (i, p), (a, b) in lora.items():
            key = f"base_model.model.model.layers.{i}.{module_of(p)}.{p}"
            case["grads"][key + ".lora_A.weight"] = t(a.grad)
            case["grads"][key + ".lora_B.weight"] = t(b.grad)
        # --- 5 optimizer steps: batch 2, grad-accum 2 (all 4 sequences per step), loss = mean over
        # every unmasked target of the step (transformers' num_items_in_batch), clip 1.0, AdamW
        # (lr 1e-2, wd 0.01), warmup 2 then linear decay over 5 steps (get_linear_schedule_with_warmup).
        lora = {k: (a.clone().requires_grad_(True), b.clone().requires_grad_(True)) for k, (a, b) in init.items()}
        params = [x for ab in lora.values() for x in ab]
        opt = torch.optim.AdamW(params, lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, foreach=False)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda st: st / 2 if st < 2 else max(0.0, (5 - st) / 3))
        steps = []
        for step in range(5):
            opt.zero_grad()
            n_step = int((labels[:, 1:] != -100).sum())
            total = 0.0
            for mb in (slice(0, 2), slice(2, 4)):
                s, _ = loss_sum(forward(cfg, W, lora, ids[mb], quant), labels[mb])
                (s / n_step).backward()
                total += s.item() / n_step
            lr = opt.param_groups[0]["lr"]
            norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            steps.append({"loss": total, "lr": lr, "grad_norm": norm.item()})
        case["steps"] = steps
        case["adapter"] = {}
        for (i, p), (a, b) in lora.items():
            key = f"base_model.model.model.layers.{i}.{module_of(p)}.{p}"
            case["adapter"][key + ".lora_A.weight"] = t(a)
            case["adapter"][key + ".lora_B.weight"] = t(b)
        # --- greedy generation from the first 4 tokens, 8 new tokens, with the trained adapter
        with torch.no_grad():
            seq = ids[:1, :4].clone()
            for _ in range(8):
                nxt = forward(cfg, W, lora, seq, quant)[:, -1, :].argmax(-1, keepdim=True)
                seq = torch.cat([seq, nxt], dim=1)
        case["greedy"] = {"prompt": ids[0, :4].tolist(), "tokens": seq[0, 4:].tolist()}
        res[quant] = case
    res["init_adapter"] = {}
    for (i, p), (a, b) in init.items():
        key = f"base_model.model.model.layers.{i}.{module_of(p)}.{p}"
        res["init_adapter"][key + ".lora_A.weight"] = t(a)
        res["init_adapter"][key + ".lora_B.weight"] = t(b)
    path = os.path.join(ROOT, "fixtures", "goldens", f"model_{name}.json")
    with open(path, "w") as f:
        json.dump(res, f, separators=(",", ":"))
    print(f"wrote fixtures/models/{name} and {os.path.relpath(path, ROOT)} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    import sys
    torch.set_num_threads(1)  # deterministic reductions
    only = set(sys.argv[1:])  # optional model names: regenerate just those (seeds stay by position, or a spec's own)
    for seed, (name, spec) in enumerate(MODELS.items()):
        if only and name not in only:
            continue
        cfg, W, g = build(name, spec, 1234 + spec.get("seed", seed))
        goldens(name, cfg, W, g)
