"""Learned continuous fields on the unit cube, evaluated on any node grid.

A field is a truncated cosine series,

.. math:: p_c(x) = \\sum_{k_1 < m_1} \\cdots \\sum_{k_D < m_D} C_{c,k}\\, \\prod_i \\cos(\\pi k_i x_i),
    \\qquad x \\in [0, 1]^D,

complete on ``[0, 1]^D`` without periodicity (the even extension of any
smooth function), so the same coefficients give the same function at every
resolution: positional information that, unlike a per-token parameter, does
not tie a model to one grid. Evaluating it on an ``n_1 x ... x n_D`` node grid
is one small matrix product per dimension (cost ``O(C m N)``, linear in the
grid).
"""

import math
from typing import Optional, Sequence

import torch
from torch import nn


def cosine_basis(
    n: int,
    n_modes: int,
    device: Optional[torch.device] = None,
    dtype: Optional[torch.dtype] = None,
) -> torch.Tensor:
    """``cos(pi k x_j)`` on the nodes ``x_j = j / (n - 1)``, ``[n, n_modes]``."""
    x = torch.linspace(0.0, 1.0, n, device=device, dtype=dtype)
    k = torch.arange(n_modes, device=device, dtype=dtype)
    return torch.cos(math.pi * x[:, None] * k[None])


class CosineField(nn.Module):
    """``C`` learned fields on ``[0, 1]^D`` as truncated cosine series (module docstring).

    Parameters
    ----------
    n_fields : int
        ``C``.
    n_modes : tuple of int
        ``m_i`` cosines per dimension (its length is ``D``).
    constant : float, default 0.0
        Initial value of every field (the ``k = 0`` coefficient; the others start at 0).
    """

    def __init__(self, n_fields: int, n_modes: Sequence[int], constant: float = 0.0) -> None:
        super().__init__()
        self.n_modes = tuple(n_modes)
        coefficients = torch.zeros(n_fields, *self.n_modes)
        coefficients[(slice(None),) + (0,) * len(self.n_modes)] = constant
        self.coefficients = nn.Parameter(coefficients)

    def forward(self, grid_shape: Sequence[int]) -> torch.Tensor:
        """The fields on the node grid, ``[C, *grid_shape]``."""
        if len(grid_shape) != len(self.n_modes):
            raise ValueError(f"this field is {len(self.n_modes)}-D, got grid {tuple(grid_shape)}")
        out = self.coefficients
        for n, m in zip(grid_shape, self.n_modes):
            # contract the leading mode dimension; the grid dimension goes last, so after D
            # steps the layout is [C, n_1, ..., n_D]
            basis = cosine_basis(n, m, device=out.device, dtype=out.dtype)  # [n, m]
            out = torch.tensordot(out, basis, dims=([1], [1]))  # [C, ..., n]
        return out
