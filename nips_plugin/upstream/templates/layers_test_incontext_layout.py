"""Tests for the in-context channel layout of NIPS, NAO and LinearNAO."""

import pytest
import torch

from ..incontext_layout import ContextLayout, pack_context, unpack_context


@pytest.mark.parametrize("grid", [(7,), (5, 6), (3, 4, 5)])
@pytest.mark.parametrize("n_queries", [0, 3])
def test_pack_context_round_trip(grid, n_queries):
    f, u = torch.randn(2, 4, 2, *grid), torch.randn(2, 4, 1, *grid)
    f_query = torch.randn(2, n_queries, 2, *grid) if n_queries else None
    x = pack_context(f, u, f_query)
    layout = ContextLayout(4, 2, 1, n_queries)
    assert list(x.shape) == [2, layout.in_channels, *grid]
    # channels are pair-major: channel 2*j + k holds pair j, component k
    torch.testing.assert_close(x[:, 2 * 3 + 1], f[:, 3, 1])
    f2, u2, q2 = unpack_context(x, 4, 2, 1)
    torch.testing.assert_close(f2, f)
    torch.testing.assert_close(u2, u)
    assert q2.shape[1] == n_queries


def test_layout_from_channels():
    assert ContextLayout.from_channels(4 * 3 + 2 * 2, 4, 2, 1).n_queries == 2
    with pytest.raises(ValueError, match="in-context layout"):
        ContextLayout.from_channels(4 * 3 + 1, 4, 2, 1)
