"""Goldens for rope_forward / rope_backward: HF LlamaRotaryEmbedding + apply_rotary_pos_emb in float32.

The rope-init functions and the rotary forward below are transcribed from transformers 4.57.6
(modeling_rope_utils._compute_default_rope_parameters / _compute_llama3_parameters, the `linear`
branch of _compute_linear_scaling_rope_parameters, LlamaRotaryEmbedding.forward, rotate_half and
apply_rotary_pos_emb in modeling_llama.py), because transformers is not installed beside Debian's
torch. dx comes from autograd through apply_rotary_pos_emb.
"""
import math
import torch
from common import t, write, gen


def default_inv_freq(base, dim):
    # _compute_default_rope_parameters
    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))


def linear_inv_freq(base, dim, factor):
    # _compute_linear_scaling_rope_parameters
    return default_inv_freq(base, dim) / factor


def llama3_inv_freq(base, dim, factor, low_freq_factor, high_freq_factor, old_context_len):
    # _compute_llama3_parameters
    inv_freq = default_inv_freq(base, dim)
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
    is_medium_freq = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium_freq, smoothed_inv_freq, inv_freq_llama)


def rotary_cos_sin(inv_freq, position_ids, attention_scaling=1.0):
    # LlamaRotaryEmbedding.forward (autocast disabled, float32)
    inv_freq_expanded = inv_freq[None, :, None].float().expand(position_ids.shape[0], -1, 1)
    position_ids_expanded = position_ids[:, None, :].float()
    freqs = (inv_freq_expanded.float() @ position_ids_expanded.float()).transpose(1, 2)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos() * attention_scaling, emb.sin() * attention_scaling


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q, cos, sin, unsqueeze_dim=1):
    cos = cos.unsqueeze(unsqueeze_dim)
    sin = sin.unsqueeze(unsqueeze_dim)
    return (q * cos) + (rotate_half(q) * sin)


# (B, T, H, D); HF config fields (rope_theta, rope_scaling); positions per batch row (packed
# sequences restart at 0). The config fields are written into the golden as an HF config.json has them.
LLAMA32 = {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
           "original_max_position_embeddings": 8192}
LLAMA31 = {**LLAMA32, "factor": 8.0}
CASES = {
    "default_10000": (2, 5, 3, 8, 10000.0, None, [[0, 1, 2, 3, 4], [0, 1, 2, 0, 1]]),
    "default_500000": (1, 4, 2, 16, 500000.0, None, [[0, 7, 4095, 8191]]),
    "linear_2": (1, 6, 2, 8, 10000.0, {"type": "linear", "factor": 2.0}, [[3, 4, 5, 100, 101, 2047]]),
    # Llama 3.2: factor 32, low 1, high 4, original 8192, theta 500000. D=16 puts pairs in all three
    # bands (high-frequency kept, medium smoothed, low-frequency divided by the factor).
    "llama3": (2, 3, 2, 16, 500000.0, LLAMA32, [[0, 1, 131071], [9000, 20000, 65536]]),
}


def inv_freq_for(theta, scaling, D):
    kind = (scaling or {}).get("rope_type", (scaling or {}).get("type", "default"))
    if kind == "default":
        return default_inv_freq(theta, D)
    if kind == "linear":
        return linear_inv_freq(theta, D, scaling["factor"])
    return llama3_inv_freq(theta, D, scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"],
                           scaling["original_max_position_embeddings"])


cases = {}
for name, (B, T, H, D, theta, scaling, pos) in CASES.items():
    g = gen(B * 1000 + T * 100 + H * 10 + D)
    inv = inv_freq_for(theta, scaling, D)
    position_ids = torch.tensor(pos, dtype=torch.int64)
    cos, sin = rotary_cos_sin(inv, position_ids)  # (B, T, D)
    x = torch.randn(B, T, H, D, generator=g, dtype=torch.float32).requires_grad_(True)
    dy = torch.randn(B, T, H, D, generator=g, dtype=torch.float32)
    # Our layout is (B, T, H, D), so cos/sin broadcast over heads at dim 2 (HF's unsqueeze_dim=2).
    y = apply_rotary_pos_emb(x, cos, sin, unsqueeze_dim=2)
    y.backward(dy)
    cases[name] = {
        "B": B, "T": T, "H": H, "D": D, "head_dim": D, "rope_theta": theta, "rope_scaling": scaling,
        "positions": t(position_ids.reshape(-1)),
        "inv_freq": t(inv),
        "cos": t(cos[..., : D // 2]), "sin": t(sin[..., : D // 2]),  # (B, T, D/2): the halves repeat
        "x": t(x), "dy": t(dy), "y": t(y), "dx": t(x.grad),
    }

# inv_freq alone at real head dims (no activations), to pin the frequency formulas bit for bit.
# invfreq_v5 uses the Transformers v5 layout (rope_parameters holding rope_theta).
for name, (D, theta, scaling) in {
    "invfreq_llama32": (64, 500000.0, LLAMA32),
    "invfreq_llama31": (128, 500000.0, LLAMA31),
    "invfreq_qwen": (64, 1000000.0, None),
    "invfreq_linear": (128, 10000.0, {"rope_type": "linear", "factor": 4.0}),
}.items():
    cases[name] = {"head_dim": D, "rope_theta": theta, "rope_scaling": scaling, "inv_freq": t(inv_freq_for(theta, scaling, D))}
cases["invfreq_v5"] = {"head_dim": 64, "rope_parameters": {**LLAMA32, "rope_theta": 500000.0},
                       "inv_freq": t(inv_freq_for(500000.0, LLAMA32, 64))}

write("rope", cases)
