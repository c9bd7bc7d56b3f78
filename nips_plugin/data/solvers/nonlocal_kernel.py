r"""A nonlocal operator with a radial kernel on ``[0, 1]``: NAO's radial-kernel problem.

.. math:: u(x) = \int_0^1 K(|x - y|)\, f(y)\, dy ,

with a hidden kernel ``K`` of interaction radius ``delta`` (``K(r) = 0`` for ``r > delta``,
several grid spacings): the response at a node depends on the load over a neighbourhood of
many nodes, so no short stencil relates ``u`` and ``f``. The integral is evaluated with
the composite trapezoidal rule on the node grid ``x_i = i h``, ``h = 1/(n-1)``, a
second-order quadrature (the tests check the order against a closed form).
"""

import numpy as np


def radial_kernel_matrix(kernel, n):
    """The quadrature matrix ``A`` with ``u = A f`` on ``n`` nodes: ``A_ij = w_j K(|x_i - x_j|)``.

    Parameters
    ----------
    kernel : callable
        ``K``: distances ``r >= 0`` (array) to kernel values (array).
    n : int
        Nodes of ``[0, 1]``, both ends included (``n >= 2``).

    Returns
    -------
    np.ndarray ``[n, n]`` float64
    """
    if n < 2:
        raise ValueError(f"need at least 2 nodes, got {n}")
    x = np.linspace(0.0, 1.0, n)
    weights = np.full(n, 1.0 / (n - 1))
    weights[[0, -1]] /= 2                                  # trapezoidal rule
    return np.asarray(kernel(np.abs(x[:, None] - x[None, :])), dtype=np.float64) * weights


def solve_radial_kernel(kernel, f):
    """Responses ``u = A f`` of loads ``f`` ``[..., n]`` for the radial ``kernel`` (float64)."""
    f = np.asarray(f, dtype=np.float64)
    return f @ radial_kernel_matrix(kernel, f.shape[-1]).T
