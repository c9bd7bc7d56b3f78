"""Tests for the nonlocal attention blocks of NIPS, NAO and LinearNAO."""

import math

import pytest
import torch

from ..nonlocal_attention import NonlocalAttentionLayer, SlabNorm, TokenLinear, nonlocal_attention

GRIDS = {1: (12,), 2: (9, 8), 3: (5, 6, 4)}


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("attention", ["linear", "quadratic"])
@pytest.mark.parametrize("fourier_filter", [False, True])
def test_nonlocal_attention_layer(dim, attention, fourier_filter):
    n_features, n_blocks = 5, 2
    grid = GRIDS[dim]
    layer = NonlocalAttentionLayer(
        n_features,
        n_blocks,
        n_heads=2,
        qk_channels=3,
        attention=attention,
        n_modes=(4,) * dim if fourier_filter else None,
    )
    J = torch.randn(2, n_blocks * math.prod(grid), n_features)
    out = layer(J, grid, 1.0 / math.prod(grid))
    assert out.shape == J.shape

    out.square().sum().backward()
    n_unused_params = sum(param.grad is None for param in layer.parameters())
    assert n_unused_params == 0


def test_attention_orders_agree():
    """Without a softmax, (Q K^T) V and Q (K^T V) are the same function."""
    q, tokens = torch.randn(2, 6, 30), torch.randn(2, 5, 30)
    key = TokenLinear(5, 6)
    linear = nonlocal_attention(q, tokens, tokens, key, 0.1, "linear")
    quadratic = nonlocal_attention(q, tokens, tokens, key, 0.1, "quadratic")
    torch.testing.assert_close(linear, quadratic, rtol=1e-4, atol=1e-5)
    k = key(tokens)
    direct = 0.1 * torch.einsum("bcs,bjs,bjt->btc", tokens, k, q)
    torch.testing.assert_close(linear, direct, rtol=1e-4, atol=1e-5)


def test_slab_norm():
    """LN over the whole [T, d] slab of each sample; the per-feature affine runs on any grid."""
    norm = SlabNorm(4)
    for n_tokens in (10, 17):
        x = 3.0 + 2.0 * torch.randn(2, n_tokens, 4)
        out = norm(x)
        torch.testing.assert_close(out.mean(dim=(1, 2)), torch.zeros(2), atol=1e-5, rtol=0)
        torch.testing.assert_close(out.std(dim=(1, 2), unbiased=False), torch.ones(2), atol=1e-3, rtol=0)
    per_token = SlabNorm(4, n_tokens=10)
    assert per_token(torch.randn(2, 10, 4)).shape == (2, 10, 4)
    with pytest.raises(ValueError, match="per-token affine"):
        per_token(torch.randn(2, 17, 4))
