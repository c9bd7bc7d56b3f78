"""The Fourier filters against a direct FFT computation with explicit frequencies."""
import itertools

import numpy as np
import pytest
import torch
from neuralop.layers.spectral_convolution import SpectralConv

from nips_plugin.compat import patch_spectral_conv, spectral_conv_is_exact
from nips_plugin.compat import spectral_conv_forward
from nips_plugin.layers.fourier_kernel import SharedSpectralFilter


def expected_multiplier(weight, grid):
    """Multiplier on the rfftn grid, built by frequency arithmetic from SpectralConv's
    centred weight layout: weight index M//2 + k holds frequency k (non-last dims),
    index k holds frequency k on the last (real-FFT) dim."""
    weight = weight.detach().numpy()
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


@pytest.mark.parametrize("grid,modes", [
    ((21, 21), (21, 21)), ((21, 21), (8, 8)), ((20, 20), (20, 20)), ((20, 20), (7, 7)),
    ((29, 29), (12, 12)), ((13,), (6,)), ((9, 8, 7), (5, 6, 4)), ((6, 6), (10, 10)),
])
def test_shared_filter_matches_direct_fft(grid, modes):
    filt = SharedSpectralFilter(3, modes, groups=2)
    x = torch.randn(2, 4, 3, *grid)
    mult = expected_multiplier(filt.weight, grid)
    mult = mult.view(2, 3, *mult.shape[1:])  # [groups, blocks, *fft]
    dims = tuple(range(-len(grid), 0))
    direct = torch.fft.irfftn(torch.fft.rfftn(x, dim=dims)[:, :, None] * mult, s=grid, dim=dims)
    out = filt(x)
    assert out.shape == (2, 4, 6, *grid)
    torch.testing.assert_close(out, direct.flatten(2, 3), rtol=1e-5, atol=1e-5)
    # the same channel multiplier for every channel: channel 0 alone gives the same result
    torch.testing.assert_close(filt(x[:, :1])[:, 0], out[:, 0], rtol=1e-5, atol=1e-6)


def test_full_multiplier_round_trip():
    filt = SharedSpectralFilter(2, (9, 9))
    full = filt.full_multiplier((9, 9))
    other = SharedSpectralFilter(2, (9, 9))
    other.load_full_multiplier(full)
    torch.testing.assert_close(other.weight, filt.weight)


@pytest.mark.parametrize("grid", [(33, 33), (21, 20), (9, 7, 5)])
def test_fixed_spectral_conv_identity_on_odd_grids(grid):
    conv = SpectralConv(2, 2, grid, bias=False)
    with torch.no_grad():
        w = conv.weight.to_tensor()
        w.zero_()
        w[0, 0], w[1, 1] = 1.0, 1.0  # identity channel map, every mode kept
    x = torch.randn(3, 2, *grid)
    rel = (spectral_conv_forward(conv, x) - x).norm() / x.norm()
    assert rel < 1e-5


def test_upstream_bug_and_patch(monkeypatch):
    monkeypatch.setattr(SpectralConv, "forward", SpectralConv.forward)  # restored after the test
    conv = SpectralConv(1, 1, (33, 33), bias=False)
    with torch.no_grad():
        conv.weight.to_tensor().fill_(1.0)
    x = torch.randn(2, 1, 33, 33)
    buggy = not spectral_conv_is_exact()
    if buggy:  # neuraloperator 2.0.0: relative error ~1.4 for an identity multiplier
        assert (conv(x) - x).norm() / x.norm() > 0.5
    assert patch_spectral_conv() is buggy
    assert patch_spectral_conv() is False  # idempotent
    assert (conv(x) - x).norm() / x.norm() < 1e-5


@pytest.mark.parametrize("factorization", [None, "tucker"])
def test_fixed_forward_equals_upstream_on_even_grids(factorization):
    conv = SpectralConv(3, 4, (8, 6), factorization=factorization)
    x = torch.randn(2, 3, 16, 12)
    torch.testing.assert_close(spectral_conv_forward(conv, x), SpectralConv.forward(conv, x))


def test_fixed_forward_resamples_band_limited_signal():
    conv = SpectralConv(1, 1, (8, 8), bias=False)
    with torch.no_grad():
        conv.weight.to_tensor().fill_(1.0)
    def wave(n):
        t = torch.arange(n) / n
        return (torch.cos(2 * np.pi * 2 * t)[:, None] * torch.sin(2 * np.pi * 3 * t)[None, :])[None, None]
    out = spectral_conv_forward(conv, wave(21), output_shape=(40, 40))
    torch.testing.assert_close(out, wave(40), rtol=1e-5, atol=1e-5)
