"""Goldens for matmul (and the f32 half of matmul_f16's contract): torch.matmul / torch.addmm /
torch.bmm in float32 on the stored layouts the kernel reads.

Per shape, one stored buffer `a` (M*K floats) and one `b` (K*N floats) serve all four variants:
  nn: a.view(M, K)   @ b.view(K, N)
  tn: a.view(K, M).T @ b.view(K, N)      (dW = dY^T X)
  nt: a.view(M, K)   @ b.view(N, K).T    (Y = X W^T, nn.Linear)
  tt: a.view(K, M).T @ b.view(N, K).T
so each case stores its inputs once and four outputs, which keeps the JSON small.
"""
import torch
from common import t, write, gen


def views(a, b, M, N, K):
    A = {"n": a.view(M, K), "t": a.view(K, M).t()}
    B = {"n": b.view(K, N), "t": b.view(N, K).t()}
    return A, B


cases = {}
# Ragged everywhere, ragged against the 64x64x16 tile, and a tile-aligned one (16x64x32).
for name, (M, N, K) in {"tiny": (5, 7, 3), "ragged": (33, 17, 65), "aligned": (16, 64, 32)}.items():
    g = gen(M * 10000 + N * 100 + K)
    a = torch.randn(M * K, generator=g, dtype=torch.float32)
    b = torch.randn(K * N, generator=g, dtype=torch.float32)
    A, B = views(a, b, M, N, K)
    case = {"M": M, "N": N, "K": K, "a": t(a), "b": t(b)}
    for ta in "nt":
        for tb in "nt":
            case["c_" + ta + tb] = t(torch.matmul(A[ta], B[tb]))
    cases[name] = case

# c += alpha * a @ b^T (accumulate + alpha) is torch.addmm(c, a, b, beta=1, alpha=alpha).
M, N, K, alpha = 6, 5, 9, -0.75
g = gen(4242)
a = torch.randn(M, K, generator=g, dtype=torch.float32)
w = torch.randn(N, K, generator=g, dtype=torch.float32)
c0 = torch.randn(M, N, generator=g, dtype=torch.float32)
cases["addmm_nt"] = {"M": M, "N": N, "K": K, "alpha": alpha, "a": t(a), "b": t(w), "c0": t(c0),
                     "c": t(torch.addmm(c0, a, w.t(), beta=1.0, alpha=alpha))}

# Batched NN: torch.bmm over packed (batch, M, K) x (batch, K, N).
Bt, M, N, K = 3, 4, 6, 5
g = gen(777)
a = torch.randn(Bt, M, K, generator=g, dtype=torch.float32)
b = torch.randn(Bt, K, N, generator=g, dtype=torch.float32)
cases["bmm_nn"] = {"batch": Bt, "M": M, "N": N, "K": K, "a": t(a), "b": t(b), "c": t(torch.bmm(a, b))}

# matmul_f16: torch's own f32 -> f16 rounding (round to nearest even) on values that cover normals,
# subnormals, exact ties and overflow to infinity; and the product of f16-rounded operands,
# accumulated in f32.
g = gen(1616)
x = torch.cat([
    torch.randn(40, generator=g) * 10.0 ** torch.randint(-8, 5, (40,), generator=g),
    torch.tensor([0.0, -0.0, 1.0, -2.0, 0.1, 65504.0, 65519.0, 65520.0, 1e5, -1e5, 2.0 ** -24, 2.0 ** -25,
                  3 * 2.0 ** -25, 2.0 ** -26, 2.0 ** -14, 2.0 ** -14 - 2.0 ** -24, 1 + 2.0 ** -11,
                  1 + 3 * 2.0 ** -11, 5.9604645e-08, 6.097555e-05]),
]).float()
M, N, K = 7, 6, 33
a = torch.randn(M, K, generator=g, dtype=torch.float32)
w = torch.randn(N, K, generator=g, dtype=torch.float32)
# The f16 results go out as bit patterns (JSON has no infinity; bits are exact anyway).
x16_bits = x.half().view(torch.int16).int() & 0xFFFF
cases["f16"] = {"x": t(x), "x16_bits": t(x16_bits), "M": M, "N": N, "K": K, "a": t(a), "b": t(w),
                "c_nt": t(torch.matmul(a.half().float(), w.half().float().t()))}

write("matmul", cases)
