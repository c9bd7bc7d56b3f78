"""Continuous pairwise kernels ``W[i, j] = MLP(x_i, x_j)`` on node grids (NAO's ``W^P``)."""

from typing import Optional, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


def grid_points(
    grid_shape: Sequence[int],
    low: float = 0.0,
    high: float = 1.0,
    device: Optional[torch.device] = None,
    dtype: Optional[torch.dtype] = None,
) -> torch.Tensor:
    """Node coordinates of a tensor grid, ``[N, D]``, row-major (first index slowest)."""
    axes = [torch.linspace(low, high, n, device=device, dtype=dtype) for n in grid_shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(grid_shape))


class CoordinateKernel(nn.Module):
    """A matrix-valued kernel on point pairs, ``W(x, y) = MLP([x, y])`` in ``R^{a x b}``.

    Being a function of coordinates, it is defined at any resolution (NAO's
    "continuous ``W^P``"). The MLP is the authors': Linear(2D, 32), LeakyReLU,
    Linear(32, 64), LeakyReLU, Linear(64, a*b).

    The kernel matrix of an ``N``-point grid costs the MLP's activations on all
    ``N^2`` point pairs (about 200 floats each); :meth:`contract` applies it to
    values chunk by chunk instead, so that they are never all alive.

    Parameters
    ----------
    n_dim : int
        Grid dimension ``D``.
    rows, cols : int, default 1
        ``a`` and ``b``: the kernel couples ``a`` components at ``x`` with ``b`` at ``y``.
    coord_range : tuple of float, default (0.0, 1.0)
        Range ``(a, b)`` of every coordinate given to the MLP: the grid's nodes are
        ``linspace(a, b, n_i)`` along axis ``i`` (the authors' NAO scripts use
        ``(-1, 1)``, LinearNAO ``(0, 1)``).
    transposed : bool, default False
        Give the MLP's second argument with its coordinates in reverse order,
        ``W(x, y) = MLP([x, (y_D, ..., y_1)])``. On a square 2-D grid that is the
        authors' "transposed grid" edges of the NAO folder's model (the released
        checkpoints): point ``j`` of the axis-swapped, flattened grid is point
        ``j`` of the grid with its two coordinates exchanged.
    """

    def __init__(
        self,
        n_dim: int,
        rows: int = 1,
        cols: int = 1,
        coord_range: tuple[float, float] = (0.0, 1.0),
        transposed: bool = False,
    ) -> None:
        super().__init__()
        self.rows, self.cols = rows, cols
        self.coord_range = tuple(coord_range)
        self.transposed = bool(transposed)
        self.layers = nn.Sequential(
            nn.Linear(2 * n_dim, 32),
            nn.LeakyReLU(),
            nn.Linear(32, 64),
            nn.LeakyReLU(),
            nn.Linear(64, rows * cols),
        )

    def _points(self, grid_shape: Sequence[int]) -> torch.Tensor:
        w = self.layers[0].weight
        return grid_points(grid_shape, *self.coord_range, device=w.device, dtype=w.dtype)

    def _columns(self, points: torch.Tensor, targets: torch.Tensor, swap: bool) -> torch.Tensor:
        """Kernel columns of the output points ``targets`` ``[n, D]``: ``[a*N, b*n]``."""
        N, n = points.shape[0], targets.shape[0]
        # the first Linear acts on the concatenation [x, y]: W [x, y] + b = (W_x x + b) + W_y y,
        # so it is applied to the N + n points and broadcast, without forming N*n edge vectors
        first = self.layers[0]
        D = points.shape[1]
        w_first, w_second = first.weight[:, :D], first.weight[:, D:]
        if self.transposed:  # W_y (y_D, ..., y_1) = (W_y with its columns reversed) y
            w_second = w_second.flip(1)
        if swap:
            h = (points @ w_second.T)[:, None] + torch.addmm(first.bias, targets, w_first.T)[None]
        else:
            h = torch.addmm(first.bias, points, w_first.T)[:, None] + (targets @ w_second.T)[None]
        out = self.layers[1:](h).view(N, n, self.rows, self.cols)
        return out.permute(2, 0, 3, 1).reshape(self.rows * N, self.cols * n)

    def _contract_columns(
        self, values: torch.Tensor, points: torch.Tensor, targets: torch.Tensor, swap: bool
    ) -> torch.Tensor:
        return torch.matmul(values, self._columns(points, targets, swap))

    def forward(self, grid_shape: Sequence[int], swap: bool = False) -> torch.Tensor:
        """The kernel matrix ``[a*N, b*N]``, ``W[(r, i), (c, j)] = MLP(x_i, x_j)[r*b + c]``
        (component-major, grid row-major); with ``swap`` the MLP sees ``(x_j, x_i)``
        (with ``transposed``, the second argument's coordinates reversed in either case)."""
        points = self._points(grid_shape)
        return self._columns(points, points, swap)

    def contract(
        self,
        values: torch.Tensor,
        grid_shape: Sequence[int],
        swap: bool = False,
        chunk_bytes: int = 2**28,
    ) -> torch.Tensor:
        """``values @ W`` without forming ``W`` (named so as not to shadow ``nn.Module.apply``).

        Output points are taken in chunks whose MLP activations take about
        ``chunk_bytes``; under autograd, with more than one chunk, each chunk is
        recomputed in the backward pass (non-reentrant checkpoint), so training
        keeps no ``N x N`` tensor either.

        Parameters
        ----------
        values : torch.Tensor ``[..., a*N]``
        grid_shape : tuple of int
        swap : bool, default False
            As for :meth:`forward`.
        chunk_bytes : int, default 2**28 (256 MiB)

        Returns
        -------
        torch.Tensor ``[..., b*N]``
        """
        points = self._points(grid_shape)
        N = points.shape[0]
        values = values.contiguous()  # one copy of a strided view, not one per chunk in matmul
        floats_per_pair = 2 * (32 + 64) + self.rows * self.cols  # MLP activations of one pair
        chunk = max(1, chunk_bytes // (N * floats_per_pair * points.element_size()))
        if chunk >= N:
            return self._contract_columns(values, points, points, swap)
        recompute = torch.is_grad_enabled()
        outs = []
        for start in range(0, N, chunk):
            targets = points[start : start + chunk]
            if recompute:
                out = checkpoint(
                    self._contract_columns, values, points, targets, swap, use_reentrant=False
                )
            else:
                out = self._contract_columns(values, points, targets, swap)
            outs.append(out.unflatten(-1, (self.cols, -1)))
        return torch.cat(outs, -1).flatten(-2)
