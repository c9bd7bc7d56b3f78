"""Spectral convolutions that are exact on odd and even grids.

neuraloperator 2.0.0's :class:`~neuralop.layers.spectral_convolution.SpectralConv`
centres the spectrum with ``fftshift`` before truncation and "undoes" it with
``fftshift`` again; on an odd-sized, non-last dimension that scrambles the
spectrum (fixed upstream after 2.0.0). Here the kept modes are gathered and
scattered directly at their FFT indices, so no shift is needed at all:

* along a non-last dimension of size ``n`` keeping ``m`` modes, the kept
  frequencies are ``k = -(m//2), ..., m - m//2 - 1``, stored at FFT index
  ``k mod n`` and, in SpectralConv's centred weight of size ``M``, at index
  ``M//2 + k`` (exactly upstream's weight layout, so checkpoints carry over);
* along the last (real-FFT) dimension the kept frequencies are ``0..m-1``.

:func:`spectral_conv_forward` is a drop-in ``forward`` for any SpectralConv
(dense or factorised weights, so FNO and TFNO alike); :class:`SharedSpectralFilter`
is NIPS's Fourier kernel, one multiplier per token block shared by all channels.
"""

from itertools import product

import torch

from neuralop.layers.spectral_convolution import SpectralConv


def kept_mode_slices(spectrum_sizes, weight_modes, n_real_dims=1):
    """Slices that pair kept Fourier modes between spectra and a centred weight.

    Parameters
    ----------
    spectrum_sizes : sequence of sequence of int
        The (r)FFT sizes of each spectrum to index (e.g. input and output
        spectra of different grids); a mode is kept if every spectrum and the
        weight hold it.
    weight_modes : sequence of int
        Size of the weight over the transformed dimensions (SpectralConv's
        layout: centred on all but the last ``n_real_dims`` dimensions).
    n_real_dims : int
        1 for a real FFT (last dimension holds frequencies ``0..m-1``), 0 for a
        complex FFT (every dimension centred).

    Returns
    -------
    list of tuple
        One entry per corner of the kept box: a tuple of slices into each
        spectrum followed by the slices into the weight. Corners never overlap
        and together cover every kept mode.
    """
    per_dim = []
    n_centred = len(weight_modes) - n_real_dims
    for i, M in enumerate(weight_modes):
        sizes = [s[i] for s in spectrum_sizes]
        m = min(M, *sizes)
        if i >= n_centred:
            per_dim.append([[slice(0, m)] * (len(sizes) + 1)])
            continue
        n_neg, n_pos, c = m // 2, m - m // 2, M // 2
        corners = [[slice(0, n_pos)] * len(sizes) + [slice(c, c + n_pos)]]
        if n_neg:
            corners.append([slice(n - n_neg, n) for n in sizes] + [slice(c - n_neg, c)])
        per_dim.append(corners)
    return [tuple(zip(*corner)) for corner in product(*per_dim)]


def _fft_dims_and_size(conv, x):
    """Transformed dims, (r)FFT sizes and forward transform for a SpectralConv input."""
    dims = tuple(range(-conv.order, 0))
    size = list(x.shape[-conv.order:])
    if not conv.complex_data:
        size[-1] = size[-1] // 2 + 1
    return dims, size


def spectral_conv_forward(self, x, output_shape=None):
    """Corrected ``SpectralConv.forward`` (exact on odd grids); same signature and semantics.

    Parameters
    ----------
    x : torch.Tensor
        ``(batch, in_channels, *grid)``.
    output_shape : tuple of int, optional
        Grid of the output (spectral resampling), as upstream.
    """
    dims, fft_size = _fft_dims_and_size(self, x)
    in_grid = x.shape[-self.order:]
    if self.fno_block_precision == "half":
        x = x.half()
    x_ft = torch.fft.fftn(x, dim=dims, norm=self.fft_norm) if self.complex_data \
        else torch.fft.rfftn(x, dim=dims, norm=self.fft_norm)
    if self.fno_block_precision == "mixed":
        x_ft = x_ft.chalf()
    out_dtype = torch.chalf if self.fno_block_precision in ("half", "mixed") else torch.cfloat

    if output_shape is None and self.resolution_scaling_factor is not None:
        output_shape = tuple(round(s * r) for s, r in zip(in_grid, self.resolution_scaling_factor))
    out_grid = tuple(output_shape) if output_shape is not None else tuple(in_grid)
    out_fft_size = list(out_grid)
    if not self.complex_data:
        out_fft_size[-1] = out_fft_size[-1] // 2 + 1

    n_lead = 1 if self.separable else 2
    weight_modes = self.weight.shape[n_lead:]
    out_ft = torch.zeros(x.shape[0], self.out_channels, *out_fft_size,
                         dtype=out_dtype, device=x.device)
    n_real = 0 if self.complex_data else 1
    for sx, so, sw in kept_mode_slices([fft_size, out_fft_size], weight_modes, n_real):
        w = self.weight[(slice(None),) * n_lead + sw]
        out_ft[(..., *so)] = self._contract(x_ft[(..., *sx)], w, separable=self.separable)

    x = torch.fft.ifftn(out_ft, s=out_grid, dim=dims, norm=self.fft_norm) if self.complex_data \
        else torch.fft.irfftn(out_ft, s=out_grid, dim=dims, norm=self.fft_norm)
    if self.bias is not None:
        x = x + self.bias
    return x


class SharedSpectralFilter(SpectralConv):
    """NIPS's Fourier kernel: one learnable multiplier per token block, shared by all channels.

    For an input ``J`` of shape ``[B, d, C, *grid]`` (``C`` token blocks, i.e.
    field components, each holding ``d`` feature channels) the filter computes,
    for every group ``g`` and block ``c``,

    .. math:: \\hat J_{g,c} = \\mathcal{F}^{-1}\\big(R_{g,c}(k)\\,\\mathcal{F}(J_c)(k)\\big),

    with the same complex multiplier ``R_{g,c}`` for all ``d`` channels
    (channel-independent, as in the NIPS paper). Modes beyond ``n_modes`` are
    zeroed; the weights use SpectralConv's (centred) layout and parameter
    count, and the transform is exact on odd grids. Groups give one multiplier
    set per attention head (the authors' two-component scripts); ``groups=1``
    shares the filter among heads.

    Parameters
    ----------
    n_blocks : int
        Number of token blocks ``C``.
    n_modes : tuple of int
        Modes kept per grid dimension (last one halved by the real FFT, as in SpectralConv).
    groups : int, default 1
        Independent multiplier sets ``G``.
    init_std : float, default 0.5
        Standard deviation of the complex Gaussian initialisation.
    fft_norm : str, default "forward"
    """

    def __init__(self, n_blocks, n_modes, groups=1, init_std=0.5, fft_norm="forward"):
        super().__init__(groups * n_blocks, groups * n_blocks, n_modes, separable=True,
                         bias=False, init_std=init_std, fft_norm=fft_norm)
        self.n_blocks = n_blocks
        self.groups = groups

    def forward(self, x, output_shape=None):
        """Filter ``x`` ``[..., C, *grid]`` into ``[..., G*C, *grid]`` (group-major)."""
        if x.shape[-self.order - 1] != self.n_blocks:
            raise ValueError(f"expected {self.n_blocks} token blocks, got shape {tuple(x.shape)}")
        dims, fft_size = _fft_dims_and_size(self, x)
        grid = x.shape[-self.order:]
        x_ft = torch.fft.rfftn(x, dim=dims, norm=self.fft_norm)
        weight = self.weight.to_tensor().view(self.groups, self.n_blocks, *self.weight.shape[1:])
        out_ft = x_ft.new_zeros(*x.shape[:-self.order - 1], self.groups, self.n_blocks, *fft_size)
        for sx, sw in kept_mode_slices([fft_size], weight.shape[2:]):
            out_ft[(..., *sx)] = x_ft[(..., None, slice(None), *sx)] * weight[(..., *sw)]
        out = torch.fft.irfftn(out_ft, s=grid, dim=dims, norm=self.fft_norm)
        return out.flatten(-self.order - 2, -self.order - 1)

    def full_multiplier(self, grid_shape):
        """The multiplier on the full real-FFT grid of ``grid_shape``, ``[G*C, *fft_size]``.

        Zero on the discarded modes; used to check the filter against a direct FFT
        and to import/export the authors' ``weights1/weights2`` layout.
        """
        fft_size = list(grid_shape)
        fft_size[-1] = fft_size[-1] // 2 + 1
        weight = self.weight.to_tensor()
        full = weight.new_zeros(weight.shape[0], *fft_size)
        for sx, sw in kept_mode_slices([fft_size], weight.shape[1:]):
            full[(slice(None), *sx)] = weight[(slice(None), *sw)]
        return full

    @torch.no_grad()
    def load_full_multiplier(self, full):
        """Set the weights from a full real-FFT-grid multiplier ``[G*C, *fft_size]``
        (inverse of :meth:`full_multiplier` on the kept modes)."""
        weight = self.weight.to_tensor()
        for sx, sw in kept_mode_slices([full.shape[1:]], weight.shape[1:]):
            weight[(slice(None), *sw)] = full[(slice(None), *sx)].to(weight.dtype)
