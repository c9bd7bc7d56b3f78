"""A plain-PyTorch illustration of the authors' NIPS forward pass, for timing.

Written from the design note (``shared/design/nips-nao-math.md`` §3, §5) and
working directly on a state dict in the layout of ``NIPS/NIPS_Darcy.py`` and
``NIPS/NIPS_MMNIST.py``: token-major ``[B, T, d]`` tensors, Python loops over
layers, heads and token blocks, explicit zero-padded spectra, as in the
published scripts. ``benchmarks/cpu_train_step.py`` and
``benchmarks/gpu_check.py`` time it as the baseline train step.

It is not a test oracle: no test imports it. What the package must reproduce
is checked against outputs recorded by running the authors' code
(``tests/models/data/authors_reference``, ``tests/models/test_compat.py``);
when this file was last changed its output on the two NIPS recordings agreed
with them to 5e-7 (checked by hand). Its former NAO / LinearNAO paths repeated
the package's misreadings of those scripts (quadrature weight, which ``W^P``
MLP multiplies which attention rows) and were removed: use
``nips_plugin.compat.from_reference_state_dict`` for those.
"""

import math

import torch
import torch.nn.functional as F

VARIANTS = ("nips_darcy", "nips_mmnist")


def _names(variant):
    return (lambda t, h: f"fcq.{t}.{h}"), (lambda t, h: f"fck.{t}.{h}"), (lambda t: f"fcn.{t}")


def _count(present):
    """Number of consecutive indices 0, 1, ... for which ``present(i)`` holds."""
    i = 0
    while present(i):
        i += 1
    return i


def _fourier(x, w1, w2):
    """Authors' 2-D filter of x [B, d, n, n]: rfft2, rows [0,m) by w1, rows [n-m,n) by w2."""
    n, m = x.shape[-2], w1.shape[0]
    x_ft = torch.fft.rfft2(x)
    out = torch.zeros_like(x_ft)
    out[:, :, :m, :m] = x_ft[:, :, :m, :m] * w1
    out[:, :, n - m:, :m] = x_ft[:, :, n - m:, :m] * w2
    return torch.fft.irfft2(out, s=(n, n))


def _filter_blocks(sd, J, t, h, n, n_blocks, variant):
    """Filter each token block of J [B, T, d]; returns [B, T, d]."""
    B, T, d = J.shape
    N = n * n
    prefixes = (["conv", "convf"] if variant == "nips_darcy"
                else ["convx", "convy", "convfx", "convfy"])
    out = []
    for c in range(n_blocks):
        key = f"{prefixes[c]}.{t}" if variant == "nips_darcy" else f"{prefixes[c]}.{t}.{h}"
        block = J[:, c * N:(c + 1) * N, :].permute(0, 2, 1).reshape(B, d, n, n)
        y = _fourier(block, sd[key + ".weights1"], sd[key + ".weights2"])
        out.append(y.reshape(B, d, N).permute(0, 2, 1))
    return out


def reference_forward(sd, variant, f, u):
    """Output of the authors' NIPS script for context ``f``, ``u`` ``[B, d, c, n, n]`` (normalised).

    ``variant`` is ``"nips_darcy"`` or ``"nips_mmnist"``. Returns the
    reconstruction of ``u`` from ``f``, ``[B, d, c_u, n, n]``.
    """
    if variant not in VARIANTS:
        raise ValueError(f"this illustration covers {VARIANTS}, got {variant!r}")
    q_name, k_name, n_name = _names(variant)
    B, d, c, n, _ = f.shape
    N, n_blocks = n * n, 2 * c
    L = _count(lambda t: q_name(t, 0) + ".weight" in sd)
    H = _count(lambda h: q_name(0, h) + ".weight" in sd)
    dk = sd[q_name(0, 0) + ".weight"].shape[0]
    delta = 1.0 / (n - 1) ** 2
    ff = f.reshape(B, d, c * N).permute(0, 2, 1)                      # [B, N c, d]
    J = torch.cat([ff, u.reshape(B, d, c * N).permute(0, 2, 1)], 1)   # [B, T, d]
    J = F.layer_norm(J, J.shape[1:], sd[n_name(0) + ".weight"], sd[n_name(0) + ".bias"])

    def lin(name, x):
        return F.linear(x, sd[name + ".weight"], sd[name + ".bias"])

    for t in range(L - 1):
        total = 0
        for h in range(H):
            Jq = torch.cat(_filter_blocks(sd, J, t, h, n, n_blocks, variant), 1)
            Q, K = lin(q_name(t, h), Jq), lin(k_name(t, h), J)
            total = total + Q @ (delta * K.transpose(1, 2) @ J / math.sqrt(dk))
        J = F.layer_norm(total, (d,), sd[n_name(t + 1) + ".weight"], sd[n_name(t + 1) + ".bias"]) + J

    t = L - 1
    out = 0
    for h in range(H):
        K = lin(k_name(t, h), J[:, :c * N])
        blocks = _filter_blocks(sd, J, t, h, n, n_blocks, variant)
        Jout = torch.cat([blocks[i] + blocks[c + i] for i in range(c)], 1)
        Q = lin(q_name(t, h), Jout)
        out = out + Q @ (delta * K.transpose(1, 2) @ ff / math.sqrt(dk))
    return out.permute(0, 2, 1).reshape(B, d, c, n, n)


def random_reference_state_dict(variant, n=9, d=6, dk=5, n_layers=3, n_heads=2, seed=0):
    """A state dict in the layout of the authors' NIPS scripts with random weights (for benchmarks)."""
    if variant not in VARIANTS:
        raise ValueError(f"this illustration covers {VARIANTS}, got {variant!r}")
    g = torch.Generator().manual_seed(seed)
    c = 2 if variant == "nips_mmnist" else 1
    N, m = n * n, n // 2 + 1
    q_name, k_name, n_name = _names(variant)

    def rnd(*shape, scale=0.3, complex_=False):
        x = scale * torch.randn(*shape, generator=g)
        return torch.complex(x, scale * torch.randn(*shape, generator=g)) if complex_ else x

    sd = {n_name(0) + ".weight": 1 + rnd(2 * c * N, d), n_name(0) + ".bias": rnd(2 * c * N, d)}
    for t in range(n_layers):
        for h in range(n_heads):
            for name in (q_name(t, h), k_name(t, h)):
                sd[name + ".weight"], sd[name + ".bias"] = rnd(dk, d), rnd(dk)
        if t >= 1:
            sd[n_name(t) + ".weight"], sd[n_name(t) + ".bias"] = 1 + rnd(d), rnd(d)
        if variant == "nips_darcy":
            for p in ("conv", "convf"):
                for w in ("weights1", "weights2"):
                    sd[f"{p}.{t}.{w}"] = rnd(m, m, scale=0.5, complex_=True)
        elif variant == "nips_mmnist":
            for p in ("convx", "convy", "convfx", "convfy"):
                for h in range(n_heads):
                    for w in ("weights1", "weights2"):
                        sd[f"{p}.{t}.{h}.{w}"] = rnd(m, m, scale=0.5, complex_=True)
    return sd
