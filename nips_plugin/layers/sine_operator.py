"""A learned full-rank operator shared by all systems: a truncated sine series.

.. math::

    (S r)_c(x) = \\sum_{c'} \\sum_{k} W_{c c' k}\\, \\phi_k(x) \\int_{[0,1]^D} \\phi_k(y)\\, r_{c'}(y)\\, dy,
    \\qquad \\phi_k(x) = \\prod_{i=1}^D \\sqrt{2} \\sin(\\pi k_i x_i),\\quad 1 \\le k_i \\le m_i,

on the node grid of ``[0, 1]^D`` (the integral by the nodes' quadrature
``h = prod_i 1/(n_i - 1)``; the sines vanish on the boundary, so that is the
trapezoidal rule). The sines are the eigenfunctions of the Dirichlet Laplacian,
so ``S`` can be the Green's operator of a constant-coefficient elliptic problem
(``W = 1/(pi^2 |k|^2)``, the initial value): a global, full-rank prior the
low-rank attention kernel cannot express, defined at every resolution (the
same continuous operator on every grid), applied in ``O(N m)`` per function.
Its discrete matrix is symmetric when ``W`` is symmetric in the components.
"""

import math
from typing import Optional, Sequence

import torch
from torch import nn


def sine_basis(
    n: int,
    n_modes: int,
    device: Optional[torch.device] = None,
    dtype: Optional[torch.dtype] = None,
) -> torch.Tensor:
    """``sqrt(2) sin(pi k x_j)``, ``k = 1..n_modes``, on the nodes ``x_j = j / (n - 1)``, ``[n, n_modes]``."""
    x = torch.linspace(0.0, 1.0, n, device=device, dtype=dtype)
    k = torch.arange(1, n_modes + 1, device=device, dtype=dtype)
    return math.sqrt(2.0) * torch.sin(math.pi * x[:, None] * k[None])


class SineSeriesOperator(nn.Module):
    """The learned operator ``S`` of the module docstring.

    Parameters
    ----------
    in_components, out_components : int
        ``c_f`` and ``c_u``.
    n_modes : tuple of int
        ``m_i`` sines per grid dimension (its length is ``D``).

    Notes
    -----
    ``W`` starts as ``1 / |k|^2`` normalised to 1 at the lowest mode, on the
    diagonal component pairs (all pairs, divided by ``c_f``, when ``c_f != c_u``):
    only its shape matters where a context fixes the scale
    (:meth:`nips_plugin.layers.context_fit.ContextFit.operator_scale`).
    """

    def __init__(self, in_components: int, out_components: int, n_modes: Sequence[int]) -> None:
        super().__init__()
        self.in_components, self.out_components = in_components, out_components
        self.n_modes = tuple(int(m) for m in n_modes)
        if not self.n_modes or min(self.n_modes) < 1:
            raise ValueError(
                f"n_modes must be positive ints, one per grid dimension, got {n_modes!r}"
            )
        k = torch.meshgrid(
            *[torch.arange(1, m + 1, dtype=torch.float32) for m in self.n_modes], indexing="ij"
        )
        spectrum = len(self.n_modes) / sum(ki**2 for ki in k)
        if in_components == out_components:
            weight = (
                torch.eye(in_components).reshape(in_components, in_components, *[1] * len(k))
                * spectrum
            )
        else:
            weight = spectrum.expand(out_components, in_components, *spectrum.shape) / in_components
        self.weight = nn.Parameter(weight.clone())

    def forward(
        self, values: torch.Tensor, grid_shape: Sequence[int], transpose: bool = False
    ) -> torch.Tensor:
        """``S`` (``transpose``: ``S^T``) applied to every row of ``values``.

        Parameters
        ----------
        values : torch.Tensor ``[B, m, N*c_f]`` (``[B, m, N*c_u]`` with ``transpose``)
            Functions as rows, component-major, grid row-major.
        grid_shape : tuple of int
        transpose : bool, default False

        Returns
        -------
        torch.Tensor ``[B, m, N*c_u]`` (``[B, m, N*c_f]`` with ``transpose``)
        """
        if len(grid_shape) != len(self.n_modes):
            raise ValueError(
                f"this operator is {len(self.n_modes)}-D, got grid {tuple(grid_shape)}"
            )
        weight = self.weight.transpose(0, 1) if transpose else self.weight
        c_out, c_in = weight.shape[:2]
        B, m = values.shape[:2]
        x = values.reshape(B * m, c_in, *grid_shape)
        bases = [
            sine_basis(n, k, device=x.device, dtype=x.dtype)
            for n, k in zip(grid_shape, self.n_modes)
        ]
        for n, basis in zip(grid_shape, bases):
            # contract the leading grid axis; the mode axis goes last, so after D steps the
            # layout is [M, c, m_1, ..., m_D]
            x = torch.tensordot(x, basis / (n - 1), dims=([2], [0]))
        x = torch.einsum("oc...,mc...->mo...", weight.to(x.dtype), x)
        for basis in bases:
            x = torch.tensordot(x, basis, dims=([2], [1]))
        return x.reshape(B, m, -1)
