"""NIPS's Fourier kernel: a spectral multiplier shared by all channels, exact on odd and even grids.

The kept modes are gathered and scattered directly at their FFT indices, so no
``fftshift`` is needed (neuraloperator 2.0.0's ``SpectralConv`` undoes its
shift with ``fftshift`` instead of ``ifftshift``, which scrambles odd-sized,
non-last dimensions; fixed upstream after 2.0.0):

* along a non-last dimension of size ``n`` keeping ``m`` modes, the kept
  frequencies are ``k = -(m//2), ..., m - m//2 - 1``, stored at FFT index
  ``k mod n`` and, in SpectralConv's centred weight of size ``M``, at index
  ``M//2 + k`` (exactly upstream's weight layout, so checkpoints carry over);
* along the last (real-FFT) dimension the kept frequencies are ``0..m-1``.

:func:`kept_mode_slices` pairs those indices; :class:`SharedSpectralFilter` is
NIPS's Fourier kernel, one multiplier per token block shared by all channels.
"""

import math
from itertools import product
from typing import Any, Optional, Sequence

import torch
from torch import nn


def kept_mode_slices(
    spectrum_sizes: Sequence[Sequence[int]], weight_modes: Sequence[int], n_real_dims: int = 1
) -> list[tuple[tuple[slice, ...], ...]]:
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


#: up to this many kept real-FFT bins, the last grid dimension is transformed by a matrix
#: product with its DFT basis (no zero padding; a GEMM beats an FFT for few bins: 2-3x on
#: CPU for 7-11 bins, even at about 60); beyond, by FFTs
MATMUL_DFT_MAX_BINS = 32


def real_dft_basis(
    n: int,
    m: int,
    norm: str = "forward",
    inverse: bool = False,
    device: Optional[torch.device] = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The one-sided real DFT of length ``n`` restricted to bins ``0..m-1``, as a real matrix.

    Complex values are interleaved (real, imaginary), as ``torch.view_as_real`` lays them out.

    Parameters
    ----------
    n, m : int
        Signal length and kept bins (``m <= n // 2 + 1``).
    norm : {"forward", "backward", "ortho"}
        As ``torch.fft``.
    inverse : bool
        False: ``[n, 2m]`` with ``x @ E = view_as_real(rfft(x)[..., :m]).flatten(-2)``.
        True: ``[2m, n]`` with ``view_as_real(Y).flatten(-2) @ E = irfft(Y, n)``
        (bins ``m..n//2`` zero).
    device, dtype
        Of the result.
    """
    j = torch.arange(n, device=device)
    k = torch.arange(m, device=device)
    angle = (2 * math.pi / n) * (torch.outer(j, k) % n).to(torch.float64)  # [n, m], exact reduction
    cos, sin = torch.cos(angle), torch.sin(angle)
    if not inverse:
        scale = {"forward": 1.0 / n, "backward": 1.0, "ortho": n**-0.5}[norm]
        return (scale * torch.stack([cos, -sin], -1)).reshape(n, 2 * m).to(dtype)
    scale = {"forward": 1.0, "backward": 1.0 / n, "ortho": n**-0.5}[norm]
    # a bin other than 0 and the Nyquist bin stands for a conjugate pair
    weight = torch.full((m, 1), 2.0 * scale, dtype=torch.float64, device=device)
    weight[0] = scale
    if n % 2 == 0 and m == n // 2 + 1:
        weight[-1] = scale
    return torch.stack([weight * cos.T, -weight * sin.T], 1).reshape(2 * m, n).to(dtype)


class _OneSidedRFFT(torch.autograd.Function):
    """The first ``m`` bins of a real FFT along the last dimension, with a cheap backward.

    torch differentiates ``rfft`` by zero-padding the gradient to a full complex
    spectrum and running a complex FFT over every transformed dimension. The
    adjoint of a one-sided real FFT is an inverse real FFT of the bins divided
    by their multiplicity (2 for a bin standing for a conjugate pair), which is
    a half-size transform along one dimension.
    """

    @staticmethod
    def forward(x: torch.Tensor, m: int, norm: str) -> torch.Tensor:
        return torch.fft.rfft(x, dim=-1, norm=norm)[..., :m]

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        ctx.n, ctx.norm = inputs[0].shape[-1], inputs[2]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        n, m = ctx.n, grad.shape[-1]
        # forward scale s of rfft over backward scale t of irfft, per norm
        ratio = {"forward": 1.0 / n, "backward": float(n), "ortho": 1.0}[ctx.norm]
        weight = torch.full((m,), ratio / 2, dtype=grad.real.dtype, device=grad.device)
        weight[0] = ratio
        if n % 2 == 0 and m == n // 2 + 1:
            weight[-1] = ratio  # the Nyquist bin has no conjugate partner
        return torch.fft.irfft(grad * weight, n=n, dim=-1, norm=ctx.norm), None, None


class SharedSpectralFilter(nn.Module):
    """NIPS's Fourier kernel: one learnable multiplier per token block, shared by all channels.

    For an input ``J`` of shape ``[B, d, C, *grid]`` (``C`` token blocks, i.e.
    field components, each holding ``d`` feature channels) the filter computes,
    for every group ``g`` and block ``c``,

    .. math:: \\hat J_{g,c} = \\mathcal{F}^{-1}\\big(R_{g,c}(k)\\,\\mathcal{F}(J_c)(k)\\big),

    with the same complex multiplier ``R_{g,c}`` for all ``d`` channels
    (channel-independent, as in the NIPS paper). Modes beyond ``n_modes`` are
    zeroed; the weight ``[G*C, m_1, ..., m_{D-1}, m_D//2 + 1]`` (complex) has the
    centred layout and parameter count of a separable
    :class:`~neuralop.layers.spectral_convolution.SpectralConv`, and the transform
    is exact on odd grids. It is not a SpectralConv: it has none of its options
    (factorisation, precision, resolution scaling, bias). Groups give one multiplier
    set per attention head (the authors' two-component scripts); ``groups=1``
    shares the filter among heads.

    Being linear and channel-shared, the filter commutes with any map that
    mixes channels only (``W F(J) = F(W J)``), which the attention layers use
    to filter whichever side has fewer channels.

    Transforms. The last (real-FFT) dimension is transformed and cut to its
    kept bins first, so the complex FFTs over the other dimensions only run on
    kept columns: no zero buffer, no loop over spectrum corners. With at most
    :data:`MATMUL_DFT_MAX_BINS` kept bins that transform and its inverse are
    products with the DFT basis (:func:`real_dft_basis`), otherwise real FFTs
    (the inverse zero-pads implicitly). The transforms always run in float32
    (float64 stays float64): under ``torch.autocast`` half-precision inputs are
    cast up and the basis products are kept out of autocast, because cuFFT's
    half precision only takes power-of-two sizes, CPU FFTs have no half
    precision and a half-precision DFT would lose the small modes; the output
    is float32.

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

    def __init__(
        self,
        n_blocks: int,
        n_modes: Sequence[int],
        groups: int = 1,
        init_std: float = 0.5,
        fft_norm: str = "forward",
    ) -> None:
        super().__init__()
        n_modes = tuple(n_modes)
        self.n_blocks, self.groups, self.n_modes, self.fft_norm = (
            n_blocks,
            groups,
            n_modes,
            fft_norm,
        )
        self.order = len(n_modes)
        shape = (groups * n_blocks, *n_modes[:-1], n_modes[-1] // 2 + 1)
        self.weight = nn.Parameter(init_std * torch.randn(shape, dtype=torch.cfloat))

    def forward(self, x: torch.Tensor, n_sources: Optional[int] = None) -> torch.Tensor:
        """Filter ``x`` ``[..., C_in, *grid]`` into ``[..., G*C_out, *grid]`` (group-major).

        Parameters
        ----------
        x : torch.Tensor
            ``C_in = C`` blocks; with ``n_sources`` also ``C_in = S``.
        n_sources : int, optional
            Filter and sum: the ``C`` multipliers are read as ``[S, C_out]``
            (source-major, ``C_out = C / S``) and output block ``o`` is
            ``sum_s R_{s,o} x_{s,o}`` (``C_in = C``) or ``sum_s R_{s,o} x_s``
            (``C_in = S``: every source feeds every output). The sum is taken
            on the spectra, so only ``C_out`` blocks are transformed back.
        """
        D = self.order
        grid = tuple(x.shape[-D:])
        n_in = x.shape[-D - 1]
        if n_in != self.n_blocks and (n_sources is None or n_in != n_sources):
            raise ValueError(f"expected {self.n_blocks} token blocks, got shape {tuple(x.shape)}")
        spectrum = self._spectrum(x)
        multiplier = self.multiplier(grid)  # [G, C, *spec]
        if n_sources is None:
            out = spectrum.unsqueeze(-D - 2) * multiplier  # [..., G, C, *spec]
        else:
            spectrum = spectrum.unflatten(-D - 1, (n_sources, -1)).unsqueeze(-D - 3)
            out = (spectrum * multiplier.unflatten(1, (n_sources, -1))).sum(-D - 2)
        return self._inverse(out, grid).flatten(-D - 2, -D - 1)

    def _spectrum(self, x: torch.Tensor) -> torch.Tensor:
        """Kept columns of the (r)FFT of ``x`` over the grid, ``[..., C, *grid[:-1], m]``."""
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        n = x.shape[-1]
        m = min(self.weight.shape[-1], n // 2 + 1)
        if m > MATMUL_DFT_MAX_BINS:
            out = _OneSidedRFFT.apply(x, m, self.fft_norm)
        else:
            basis = real_dft_basis(n, m, self.fft_norm, device=x.device, dtype=x.dtype)
            with torch.autocast(x.device.type, enabled=False):  # the DFT stays in x's precision
                out = torch.view_as_complex((x @ basis).unflatten(-1, (m, 2)))
        if self.order > 1:
            out = torch.fft.fftn(out, dim=tuple(range(-self.order, -1)), norm=self.fft_norm)
        return out

    def _inverse(self, spectrum: torch.Tensor, grid_shape: Sequence[int]) -> torch.Tensor:
        """Real field on ``grid_shape`` from kept spectrum columns (inverse of :meth:`_spectrum`)."""
        if self.order > 1:
            spectrum = torch.fft.ifftn(
                spectrum, dim=tuple(range(-self.order, -1)), norm=self.fft_norm
            )
        n, m = grid_shape[-1], spectrum.shape[-1]
        if m > MATMUL_DFT_MAX_BINS:
            return torch.fft.irfft(spectrum, n=n, dim=-1, norm=self.fft_norm)
        basis = real_dft_basis(
            n, m, self.fft_norm, inverse=True, device=spectrum.device, dtype=spectrum.real.dtype
        )
        with torch.autocast(spectrum.device.type, enabled=False):
            return torch.view_as_real(spectrum).flatten(-2) @ basis

    def multiplier(self, grid_shape: Sequence[int]) -> torch.Tensor:
        """The multiplier in FFT order on the kept spectrum columns, ``[G, C, *grid[:-1], m]``.

        Non-last dimensions have their full FFT length (frequencies beyond the
        kept modes are zero); the last one holds the ``m`` kept real-FFT bins.
        Built from the weight by slicing and concatenation (differentiable).
        """
        w = self.weight  # [G*C, *M], centred
        for axis, n in enumerate(grid_shape[:-1], start=1):
            M = w.shape[axis]
            m = min(M, n)
            n_neg, centre = m // 2, M // 2
            parts = [w.narrow(axis, centre, m - n_neg)]  # frequencies 0 .. m-n_neg-1
            if n > m:
                shape = list(w.shape)
                shape[axis] = n - m
                parts.append(w.new_zeros(shape))
            if n_neg:
                parts.append(w.narrow(axis, centre - n_neg, n_neg))  # frequencies -n_neg .. -1
            w = torch.cat(parts, axis)
        w = w[..., : min(w.shape[-1], grid_shape[-1] // 2 + 1)]
        return w.view(self.groups, self.n_blocks, *w.shape[1:])

    def full_multiplier(self, grid_shape: Sequence[int]) -> torch.Tensor:
        """The multiplier on the full real-FFT grid of ``grid_shape``, ``[G*C, *fft_size]``.

        Zero on the discarded modes; used to check the filter against a direct FFT
        and to import/export the authors' ``weights1/weights2`` layout.
        """
        kept = self.multiplier(grid_shape).flatten(0, 1)
        full = kept.new_zeros(*kept.shape[:-1], grid_shape[-1] // 2 + 1)
        full[..., : kept.shape[-1]] = kept
        return full

    @torch.no_grad()
    def load_full_multiplier(self, full: torch.Tensor) -> None:
        """Set the weights from a full real-FFT-grid multiplier ``[G*C, *fft_size]``
        (inverse of :meth:`full_multiplier` on the kept modes)."""
        weight = self.weight
        for sx, sw in kept_mode_slices([full.shape[1:]], weight.shape[1:]):
            weight[(slice(None), *sw)] = full[(slice(None), *sx)].to(weight.dtype)
