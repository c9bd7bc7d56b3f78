import pytest
import torch

from nips_plugin import pack_context, unpack_context, pack_responses, unpack_responses
from nips_plugin.layers.context import ContextLayout


@pytest.mark.parametrize("grid", [(7,), (5, 6), (3, 4, 5)])
@pytest.mark.parametrize("cf,cu,q", [(1, 1, 0), (2, 2, 3), (1, 2, 2)])
def test_pack_roundtrip_and_channel_order(grid, cf, cu, q):
    B, d = 2, 4
    f, u = torch.randn(B, d, cf, *grid), torch.randn(B, d, cu, *grid)
    fq = torch.randn(B, q, cf, *grid) if q else None
    x = pack_context(f, u, fq)
    assert x.shape == (B, d * (cf + cu) + q * cf, *grid)
    # pair-major: channel j*c + k is pair j, component k
    assert torch.equal(x[:, 1 * cf + (cf - 1)], f[:, 1, cf - 1])
    assert torch.equal(x[:, d * cf + 2 * cu], u[:, 2, 0])
    f2, u2, fq2 = unpack_context(x, d, cf, cu)
    assert torch.equal(f2, f) and torch.equal(u2, u)
    assert fq2.shape == (B, q, cf, *grid)
    if q:
        assert torch.equal(fq2, fq)
    assert torch.equal(unpack_responses(pack_responses(u), cu), u)


def test_layout_counts_and_errors():
    lay = ContextLayout.from_channels(10 * 3 + 5 * 2, n_pairs=10, in_components=2, out_components=1)
    assert lay.n_queries == 5 and lay.out_channels == 5
    assert ContextLayout(10, 1, 1, 0).out_channels == 10
    with pytest.raises(ValueError, match="in-context layout"):
        ContextLayout.from_channels(19, n_pairs=10)
    with pytest.raises(ValueError, match="q\\*2"):
        ContextLayout.from_channels(31, n_pairs=10, in_components=2, out_components=1)
    with pytest.raises(ValueError, match="share"):
        pack_context(torch.randn(1, 3, 1, 5, 5), torch.randn(1, 3, 1, 5, 6))
    with pytest.raises(ValueError, match="shaped"):
        pack_context(torch.randn(3, 5, 5), torch.randn(3, 5, 5))
