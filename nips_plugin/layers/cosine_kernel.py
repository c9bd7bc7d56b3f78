"""Continuous pairwise kernels as truncated cosine series (a cheap, resolution-independent ``W^P``).

.. math:: W(x, y)_{rc} = \\sum_{k, l} C_{r k c l}\\, \\phi_k(x)\\, \\phi_l(y),
    \\qquad \\phi_k(x) = \\prod_i \\cos(\\pi k_i t_i(x)),\\quad k_i < m_i,

with ``t(x) in [0, 1]^D`` the point's position in the grid's box: the product
cosine basis of :mod:`nips_plugin.layers.cosine_field` in each argument, so the
same coefficients give the same function at every resolution. On an
``N``-point grid with ``M = prod_i m_i`` basis functions, ``W = Phi C Phi^T``
(``Phi`` the ``[N, M]`` basis matrix) is applied to values as
``((values Phi) C) Phi^T``: cost ``O(N M)`` per row plus ``O(M^2)``, where an MLP
kernel of the coordinates costs its activations on all ``N^2`` point pairs.
"""

import functools
from typing import Sequence

import torch
from torch import nn

from .cosine_field import cosine_basis


class CosineKernel(nn.Module):
    """A matrix-valued kernel ``W(x, y)`` in ``R^{a x b}`` on point pairs (module docstring).

    Same interface as :class:`~nips_plugin.layers.coordinate_kernel.CoordinateKernel`
    (``forward`` gives the kernel matrix, :meth:`contract` applies it without
    forming it). The grid's nodes are equispaced along every axis, endpoints
    included, so ``t_i = j_i / (n_i - 1)`` whatever the coordinates' range.

    Parameters
    ----------
    n_modes : tuple of int
        ``m_i`` cosines per dimension in each argument (its length is ``D``):
        ``(a M)(b M)`` coefficients.
    rows, cols : int, default 1
        ``a`` and ``b``: the kernel couples ``a`` components at ``x`` with ``b`` at ``y``.

    Notes
    -----
    Initialisation: independent ``N(0, 1/M^2)`` coefficients, so that ``W`` has
    values of order ``2^{-D}`` (``phi_k^2`` averages ``1/2`` per non-constant
    factor), a random smooth kernel like the MLP's at initialisation.
    """

    def __init__(self, n_modes: Sequence[int], rows: int = 1, cols: int = 1) -> None:
        super().__init__()
        self.n_modes = tuple(int(m) for m in n_modes)
        if not self.n_modes or min(self.n_modes) < 1:
            raise ValueError(f"n_modes must be a non-empty tuple of positive ints, got {n_modes!r}")
        self.rows, self.cols = rows, cols
        M = self.n_basis
        self.coefficients = nn.Parameter(torch.randn(rows, M, cols, M) / M)

    @property
    def n_basis(self) -> int:
        """``M = prod_i m_i``, the basis functions per argument."""
        return functools.reduce(int.__mul__, self.n_modes, 1)

    def basis(self, grid_shape: Sequence[int]) -> torch.Tensor:
        """``Phi[j, k] = phi_k(x_j)`` on the node grid (row-major nodes and modes), ``[N, M]``."""
        if len(grid_shape) != len(self.n_modes):
            raise ValueError(f"this kernel is {len(self.n_modes)}-D, got grid {tuple(grid_shape)}")
        c = self.coefficients
        # row-major on both sides: kron(B_1, B_2)[(i1, i2), (k1, k2)] = B_1[i1, k1] B_2[i2, k2]
        return functools.reduce(
            torch.kron,
            [
                cosine_basis(n, m, device=c.device, dtype=c.dtype)
                for n, m in zip(grid_shape, self.n_modes)
            ],
        )

    def _coefficient_matrix(self, swap: bool) -> torch.Tensor:
        """``C`` as an ``[a M, b M]`` matrix; with ``swap`` that of ``W(y, x)``, whose rows
        take the basis index of the second argument."""
        c = self.coefficients.permute(0, 3, 2, 1) if swap else self.coefficients
        return c.reshape(self.rows * self.n_basis, self.cols * self.n_basis)

    def forward(self, grid_shape: Sequence[int], swap: bool = False) -> torch.Tensor:
        """The kernel matrix ``[a*N, b*N]``, ``W[(r, i), (c, j)] = W(x_i, x_j)[r, c]``
        (component-major, grid row-major); with ``swap``, ``W(x_j, x_i)[r, c]``."""
        phi = self.basis(grid_shape)
        C = self._coefficient_matrix(swap).view(self.rows, self.n_basis, self.cols, self.n_basis)
        W = torch.einsum("ik,rkcl,jl->ricj", phi, C, phi)
        return W.reshape(self.rows * phi.shape[0], self.cols * phi.shape[0])

    def contract(
        self, values: torch.Tensor, grid_shape: Sequence[int], swap: bool = False
    ) -> torch.Tensor:
        """``values @ W`` as ``((values Phi) C) Phi^T``, never forming ``W``.

        Parameters
        ----------
        values : torch.Tensor ``[..., a*N]``
        grid_shape : tuple of int
        swap : bool, default False
            As for :meth:`forward`.

        Returns
        -------
        torch.Tensor ``[..., b*N]``
        """
        phi = self.basis(grid_shape)  # [N, M]
        spectral = torch.matmul(values.unflatten(-1, (self.rows, -1)), phi)  # [..., a, M]
        spectral = torch.matmul(spectral.flatten(-2), self._coefficient_matrix(swap))
        return torch.matmul(spectral.unflatten(-1, (self.cols, -1)), phi.T).flatten(-2)
