#!/usr/bin/python3
"""Writes fixtures/io/: PyTorch's own f16/bf16 -> f32 conversions and RoPE inv_freq tables, the
ground truth for src/io/safetensors.ts (dtype conversion) and src/model/rope.ts (ropeInvFreq).

The `safetensors` Python package is not available here, so the file is laid out by hand following
the format (safetensors README; docs/formats.md#safetensors): u64 LE header length, JSON header padded with spaces to 8, raw LE data.
Run: /usr/bin/python3 scripts/make-io-fixtures.py   (torch 1.13, CPU)
"""
import json, math, os, struct
import torch

OUT = os.path.join(os.path.dirname(__file__), '..', 'fixtures', 'io')
os.makedirs(OUT, exist_ok=True)
g = torch.Generator().manual_seed(0)

# Values that exercise rounding, subnormals, signed zero, infinities and large magnitudes.
base = torch.randn(61, generator=g) * 3
special = torch.tensor([0.0, -0.0, 1e-8, -6e-8, 65504.0, 70000.0, -1e30, 3.0e38, float('inf'), float('-inf'), 1.0009765625])
x = torch.cat([base, special])
tensors = {
    'f32': x.clone(),
    'f16': x.to(torch.float16),
    'bf16': x.to(torch.bfloat16),
    'f16_matrix': (torch.randn(3, 5, generator=g)).to(torch.float16),
}
names = {torch.float32: 'F32', torch.float16: 'F16', torch.bfloat16: 'BF16'}

header, blobs, off = {'__metadata__': {'format': 'pt'}}, [], 0
for name in sorted(tensors):
    t = tensors[name].contiguous()
    raw = t.view(torch.int16).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes()
    header[name] = {'dtype': names[t.dtype], 'shape': list(t.shape), 'data_offsets': [off, off + len(raw)]}
    blobs.append(raw)
    off += len(raw)
h = json.dumps(header, separators=(',', ':')).encode()
h += b' ' * (-len(h) % 8)
with open(os.path.join(OUT, 'torch-dtypes.safetensors'), 'wb') as f:
    f.write(struct.pack('<Q', len(h)) + h + b''.join(blobs))

def f32list(t):
    # JSON has no inf; encode as strings the test maps back.
    return [v if math.isfinite(v) else ('inf' if v > 0 else '-inf') for v in t.float().flatten().tolist()]

expected = {name: f32list(t) for name, t in tensors.items()}

# RoPE inv_freq exactly as HF computes it (float32 throughout), modeling_rope_utils.py.
def inv_default(theta, dim):
    return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))

def inv_llama3(theta, dim, factor, lff, hff, old):
    inv = inv_default(theta, dim)
    low_wl, high_wl = old / lff, old / hff
    wavelen = 2 * math.pi / inv
    inv_l = torch.where(wavelen > low_wl, inv / factor, inv)
    smooth = (old / wavelen - lff) / (hff - lff)
    smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
    is_medium = ~(wavelen < high_wl) * ~(wavelen > low_wl)
    return torch.where(is_medium, smoothed, inv_l)

expected['rope'] = {
    'default_theta10000_d64': f32list(inv_default(10000.0, 64)),
    'default_theta1e6_d128': f32list(inv_default(1000000.0, 128)),
    'linear_theta10000_d64_f4': f32list(inv_default(10000.0, 64) / 4.0),
    'llama3_theta500000_d128': f32list(inv_llama3(500000.0, 128, 32.0, 1.0, 4.0, 8192)),
    'llama3_theta500000_d64_f8': f32list(inv_llama3(500000.0, 64, 8.0, 1.0, 4.0, 8192)),
}
with open(os.path.join(OUT, 'torch-expected.json'), 'w') as f:
    json.dump(expected, f, indent=1)
print('wrote', OUT)
