"""Goldens for LongRoPE (Phi-3-128k, Phi-3.5): inv_freq with the short and the long factors, the
attention factor, and the cos/sin a forward gets, with or without passing the original context.

Transcribed from transformers 4.57.6 (modeling_rope_utils._compute_longrope_parameters and
dynamic_rope_update's longrope_frequency_update; Phi3RotaryEmbedding.forward), because transformers
is not installed beside Debian's torch.
"""
import math
import torch
from common import t, write


def longrope(config, seq_len=None):
    # _compute_longrope_parameters
    base = config["rope_theta"]
    dim = config["head_dim"]
    rs = config["rope_scaling"]
    factor = rs.get("factor")
    attention_factor = rs.get("attention_factor")
    orig = config.get("original_max_position_embeddings")
    if orig:
        factor = config["max_position_embeddings"] / orig
    else:
        orig = config["max_position_embeddings"]
    if attention_factor is None:
        attention_factor = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(orig))
    ext = torch.tensor(rs["long_factor"] if seq_len and seq_len > orig else rs["short_factor"], dtype=torch.float32)
    shape = torch.arange(0, dim, 2, dtype=torch.int64).float() / dim
    return 1.0 / (ext * base ** shape), attention_factor


def cos_sin(inv_freq, positions, scaling):
    # Phi3RotaryEmbedding.forward (float32), first half of each row (the halves repeat)
    freqs = (inv_freq[None, :, None].float() @ torch.tensor([positions], dtype=torch.float32)[:, None, :]).transpose(1, 2)
    return (freqs.cos() * scaling)[0], (freqs.sin() * scaling)[0]


D = 96  # Phi-3.5-mini: 3072 / 32 heads
# Smoothly rising factors of Phi-3.5's form (1 at high frequencies, tens at low ones), not its values.
short = [round(1.0 + 0.05 * j + 0.002 * j * j, 4) for j in range(D // 2)]
long = [round(1.0 + 0.8 * j + 0.02 * j * j, 4) for j in range(D // 2)]
cases = {}
for name, cfg in {
    # Phi-3.5-mini's context fields: original 4096, max 131072 (scale 32).
    "phi35": {"head_dim": D, "rope_theta": 10000.0, "max_position_embeddings": 131072, "original_max_position_embeddings": 4096,
              "rope_scaling": {"type": "longrope", "short_factor": short, "long_factor": long}},
    # "su" is Phi-3-128k's older name; Phi3Config renames it to "longrope".
    "su_attention_factor": {"head_dim": 8, "rope_theta": 10000.0, "max_position_embeddings": 64, "original_max_position_embeddings": 16,
                            "rope_scaling": {"type": "su", "short_factor": [1, 1.5, 2, 3], "long_factor": [1, 2, 4, 8], "attention_factor": 1.25}},
    # No original_max_position_embeddings: the scale is rope_scaling.factor, the original is max.
    "factor_only": {"head_dim": 8, "rope_theta": 500.0, "max_position_embeddings": 32,
                    "rope_scaling": {"rope_type": "longrope", "short_factor": [1, 1.2, 1.4, 1.6], "long_factor": [1, 3, 5, 7], "factor": 4.0}},
}.items():
    orig = cfg.get("original_max_position_embeddings") or cfg["max_position_embeddings"]
    s_inv, attention = longrope(cfg)
    l_inv, _ = longrope(cfg, orig + 1)
    positions = [0, 1, orig - 1, orig, orig + 7]
    sc, ss = cos_sin(s_inv, positions, attention)
    lc, ls = cos_sin(l_inv, positions, attention)
    cases[name] = {**cfg, "positions": positions, "attention_factor": attention,
                   "inv_freq_short": t(s_inv), "inv_freq_long": t(l_inv),
                   "cos_short": t(sc), "sin_short": t(ss), "cos_long": t(lc), "sin_long": t(ls)}

write("longrope", cases)
