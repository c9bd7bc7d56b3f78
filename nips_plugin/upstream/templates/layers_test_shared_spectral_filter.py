"""Tests for SharedSpectralFilter, NIPS's Fourier kernel (one multiplier shared by all channels)."""

import itertools

import numpy as np
import pytest
import torch

from ..shared_spectral_filter import SharedSpectralFilter


def expected_multiplier(weight, grid):
    """The multiplier on the rfftn grid, built by frequency arithmetic from the centred weight
    layout of SpectralConv: weight index ``M//2 + k`` holds frequency ``k`` on the non-last
    dimensions, index ``k`` holds frequency ``k`` on the last (real-FFT) dimension."""
    weight = weight.detach().cpu().numpy()
    C, *M = weight.shape
    fft = list(grid[:-1]) + [grid[-1] // 2 + 1]
    out = np.zeros((C, *fft), dtype=complex)
    for idx in itertools.product(*(range(s) for s in fft)):
        widx = []
        for axis, (r, n, m_w) in enumerate(zip(idx, grid, M)):
            if axis == len(grid) - 1:
                ok, w = r < min(m_w, fft[-1]), r
            else:
                k = int(np.fft.fftfreq(n, 1.0 / n)[r])
                m = min(m_w, n)
                ok, w = -(m // 2) <= k <= m - m // 2 - 1, m_w // 2 + k
            if not ok:
                break
            widx.append(w)
        else:
            out[(slice(None), *idx)] = weight[(slice(None), *widx)]
    return torch.from_numpy(out).to(torch.complex64)


@pytest.mark.parametrize(
    "grid,modes",
    [((13,), (6,)), ((21, 21), (8, 8)), ((20, 20), (7, 7)), ((9, 8, 7), (5, 6, 4))],
)
@pytest.mark.parametrize("groups", [1, 2])
def test_shared_spectral_filter(grid, modes, groups):
    """Matches a direct FFT on odd and even grids, in 1-, 2- and 3-D."""
    filt = SharedSpectralFilter(3, modes, groups=groups)
    x = torch.randn(2, 4, 3, *grid, requires_grad=True)
    mult = expected_multiplier(filt.weight, grid)
    mult = mult.view(groups, 3, *mult.shape[1:])  # [groups, blocks, *fft]
    dims = tuple(range(-len(grid), 0))
    direct = torch.fft.irfftn(torch.fft.rfftn(x, dim=dims)[:, :, None] * mult, s=grid, dim=dims)
    out = filt(x)
    assert out.shape == (2, 4, groups * 3, *grid)
    torch.testing.assert_close(out, direct.flatten(2, 3), rtol=1e-5, atol=1e-5)
    # the same multiplier for every channel: channel 0 alone gives the same result
    torch.testing.assert_close(filt(x[:, :1])[:, 0], out[:, 0], rtol=1e-5, atol=1e-6)

    out.square().sum().backward()
    assert filt.weight.grad is not None and x.grad is not None


def test_full_multiplier_round_trip():
    filt = SharedSpectralFilter(2, (9, 9))
    full = filt.full_multiplier((9, 9))
    other = SharedSpectralFilter(2, (9, 9))
    other.load_full_multiplier(full)
    torch.testing.assert_close(other.weight, filt.weight)
