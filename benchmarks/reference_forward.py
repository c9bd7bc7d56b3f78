"""A straightforward implementation of the authors' forward passes, read off the
design note (``shared/design/nips-nao-math.md`` §3-5), working directly on a
state dict in the authors' layout.

It is deliberately plain (token-major ``[B, T, d]`` tensors, Python loops over
layers, heads and token blocks, explicit zero-padded spectra), as in the
published scripts. Two uses:

* the tests check that ``nips_plugin.compat.from_reference_state_dict`` gives
  a model whose output equals this one;
* ``benchmarks/cpu_train_step.py`` times it as the baseline train step.
"""

import math

import torch
import torch.nn.functional as F

VARIANTS = ("nips_darcy", "nips_mmnist", "linear_nao_darcy", "nao_darcy")


def _names(variant):
    if variant == "nao_darcy":
        return (lambda t, h: f"fcq_{t}_{h}"), (lambda t, h: f"fck_{t}_{h}"), (lambda t: f"fcn{t}")
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


def _mlp(sd, prefix, edges):
    h = F.leaky_relu(F.linear(edges, sd[prefix + ".layers.0.weight"], sd[prefix + ".layers.0.bias"]))
    h = F.leaky_relu(F.linear(h, sd[prefix + ".layers.2.weight"], sd[prefix + ".layers.2.bias"]))
    return F.linear(h, sd[prefix + ".layers.4.weight"], sd[prefix + ".layers.4.bias"])[..., 0]


def reference_forward(sd, variant, f, u):
    """Output of the authors' script for context ``f``, ``u`` ``[B, d, c, n, n]`` (normalised).

    Returns the reconstruction of ``u`` from ``f``, ``[B, d, c_u, n, n]``.
    """
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
            if variant.startswith("nips"):
                Jq = torch.cat(_filter_blocks(sd, J, t, h, n, n_blocks, variant), 1)
            else:
                Jq = J
            Q, K = lin(q_name(t, h), Jq), lin(k_name(t, h), J)
            if variant == "nao_darcy":
                A = Q @ K.transpose(1, 2) / math.sqrt(dk)
                total = total + delta * A @ J
            else:
                total = total + Q @ (delta * K.transpose(1, 2) @ J / math.sqrt(dk))
        J = F.layer_norm(total, (d,), sd[n_name(t + 1) + ".weight"], sd[n_name(t + 1) + ".bias"]) + J

    t = L - 1
    out = 0
    for h in range(H):
        K = lin(k_name(t, h), J[:, :c * N])
        if variant.startswith("nips"):
            blocks = _filter_blocks(sd, J, t, h, n, n_blocks, variant)
            Jout = torch.cat([blocks[i] + blocks[c + i] for i in range(c)], 1)
            Q = lin(q_name(t, h), Jout)
            out = out + Q @ (delta * K.transpose(1, 2) @ ff / math.sqrt(dk))
        else:
            Q = lin(q_name(t, h), J)
            out = out + Q @ (delta * K.transpose(1, 2) @ ff / math.sqrt(dk))   # [B, T, d]
    if variant in ("linear_nao_darcy", "nao_darcy"):
        lo = -1.0 if variant == "nao_darcy" else 0.0
        g = torch.linspace(lo, 1.0, n)
        pts = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(N, 2)
        edges = torch.cat([pts[:, None].expand(N, N, 2), pts[None].expand(N, N, 2)], -1)
        Wf, Wu = _mlp(sd, "kernelf", edges), _mlp(sd, "kernel", edges)   # W[i, j] = MLP(x_i, x_j)
        V1, V2 = out[:, :N], out[:, N:]
        if variant == "nao_darcy":       # contracts W's first index
            out = delta * (Wf.T @ V1 + Wu.T @ V2)
        else:                            # contracts W's second index
            out = delta * (Wf @ V1 + Wu @ V2)
    return out.permute(0, 2, 1).reshape(B, d, c, n, n)


def random_reference_state_dict(variant, n=9, d=6, dk=5, n_layers=3, n_heads=2, seed=0):
    """A state dict in the authors' layout with random weights (for tests and benchmarks)."""
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
    if variant in ("linear_nao_darcy", "nao_darcy"):
        for p in ("kernel", "kernelf"):
            for i, (a, b) in zip((0, 2, 4), ((4, 32), (32, 64), (64, 1))):
                sd[f"{p}.layers.{i}.weight"], sd[f"{p}.layers.{i}.bias"] = rnd(b, a, scale=0.5), rnd(b)
    return sd
