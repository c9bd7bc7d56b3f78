"""Continuous pairwise kernels ``W[i, j] = MLP(x_i, x_j)`` on node grids (NAO's ``W^P``)."""

import torch
from torch import nn


def grid_points(grid_shape, low=0.0, high=1.0, device=None, dtype=None):
    """Node coordinates of a tensor grid, ``[N, D]``, row-major (first index slowest)."""
    axes = [torch.linspace(low, high, n, device=device, dtype=dtype) for n in grid_shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(grid_shape))


class CoordinateKernel(nn.Module):
    """A matrix-valued kernel on point pairs, ``W(x, y) = MLP([x, y])`` in ``R^{a x b}``.

    Being a function of coordinates, it is defined at any resolution (NAO's
    "continuous ``W^P``"). The MLP is the authors': Linear(2D, 32), LeakyReLU,
    Linear(32, 64), LeakyReLU, Linear(64, a*b).

    Parameters
    ----------
    n_dim : int
        Grid dimension ``D``.
    rows, cols : int, default 1
        ``a`` and ``b``: the kernel couples ``a`` components at ``x`` with ``b`` at ``y``.
    coord_range : tuple of float, default (0.0, 1.0)
        Coordinates given to the MLP for the unit domain (the authors' NAO uses (-1, 1)).
    """

    def __init__(self, n_dim, rows=1, cols=1, coord_range=(0.0, 1.0)):
        super().__init__()
        self.rows, self.cols = rows, cols
        self.coord_range = tuple(coord_range)
        self.layers = nn.Sequential(
            nn.Linear(2 * n_dim, 32), nn.LeakyReLU(), nn.Linear(32, 64), nn.LeakyReLU(),
            nn.Linear(64, rows * cols),
        )

    def forward(self, grid_shape, swap=False):
        """The kernel matrix ``[a*N, b*N]``, ``W[(r, i), (c, j)] = MLP(x_i, x_j)[r*b + c]``
        (component-major, grid row-major); with ``swap`` the MLP sees ``(x_j, x_i)``."""
        w = self.layers[0].weight
        pts = grid_points(grid_shape, *self.coord_range, device=w.device, dtype=w.dtype)
        N = pts.shape[0]
        first, second = (pts[None, :, :], pts[:, None, :]) if swap else (pts[:, None, :], pts[None, :, :])
        edges = torch.cat([first.expand(N, N, -1), second.expand(N, N, -1)], dim=-1)
        out = self.layers(edges).view(N, N, self.rows, self.cols)
        return out.permute(2, 0, 3, 1).reshape(self.rows * N, self.cols * N)
