"""Verified discretisations of the benchmark PDEs on the node grid of ``[0,1]^2`` (and a
nonlocal radial-kernel operator on ``[0, 1]``).

Every field is ``[..., n, n]`` on the nodes ``(i h, j h)``, ``h = 1/(n-1)``,
boundary nodes included, array axis 0 along ``x``. Each solver exposes its
sparse interior operator (for exact Green's operators and inverse problems)
and solves many right-hand sides with one factorisation.
"""
from .darcy import darcy_operator, solve_darcy
from .elasticity import elasticity_operator, solve_elasticity
from .nonlocal_kernel import radial_kernel_matrix, solve_radial_kernel

__all__ = ["darcy_operator", "solve_darcy", "elasticity_operator", "solve_elasticity", "radial_kernel_matrix",
           "solve_radial_kernel"]
