r"""Darcy flow on the unit square: :math:`-\nabla\cdot(b\nabla u) = f`, :math:`u = 0` on the boundary.

Grid convention (shared by every solver of the package)
-------------------------------------------------------
Every field lives on the ``n x n`` nodes of :math:`[0,1]^2`, boundary nodes
included: array index ``(i, j)`` is the point :math:`(x, y) = (i h, j h)`,
:math:`h = 1/(n-1)`. Array axis 0 is ``x``, axis 1 is ``y``. The unknowns are
the :math:`m^2 = (n-2)^2` interior nodes, row-major:
``u_int = u[1:-1, 1:-1].reshape(-1)``.

Discretisation
--------------
Flux-form five-point finite differences. The flux between neighbouring nodes
:math:`P` and :math:`Q` uses the face coefficient

.. math::  b_{PQ} = \frac{2 b_P b_Q}{b_P + b_Q}   \qquad \text{(harmonic mean)},

.. math::  (A u)_P = h^{-2} \sum_{Q \in N(P)} b_{PQ}\,(u_P - u_Q) = f_P,

with :math:`u_Q = 0` at boundary nodes. For smooth :math:`b` the harmonic mean
is :math:`b` at the face midpoint up to :math:`O(h^2)`, so the scheme is
second-order; for a two-phase :math:`b` it is the series (flux-continuous)
average across a face, which keeps the scheme robust at material jumps.
:math:`A` is a symmetric positive-definite M-matrix.
"""

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import splu


def _float64(name, a):
    """Float64 numpy copy of an array-like or tensor; ``ValueError`` unless real and finite."""
    if torch.is_tensor(a):
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"{name} must hold real numbers, got dtype {a.dtype}")
    a = a.astype(np.float64)
    n_bad = a.size - np.count_nonzero(np.isfinite(a))
    if n_bad:
        raise ValueError(f"{name} has {n_bad} non-finite (NaN/inf) values")
    return a


def _coefficient(name, c):
    """Validated float64 ``[n, n]`` coefficient field: square, ``n >= 3``, positive, finite."""
    c = _float64(name, c)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"{name} must be a square [n, n] node field, got shape {c.shape}")
    if c.shape[0] < 3:
        raise ValueError(
            f"{name} is on a {c.shape[0]}x{c.shape[1]} grid; at least 3x3 nodes are needed "
            "(one interior node)"
        )
    if np.any(c <= 0):
        raise ValueError(f"{name} must be positive everywhere, its minimum is {c.min():g}")
    return c


def _source(name, f, trailing):
    """Float64 copy of a right-hand side whose trailing dimensions must be ``trailing``."""
    f = _float64(name, f)
    if f.shape[f.ndim - len(trailing):] != tuple(trailing):
        raise ValueError(
            f"{name} must be shaped [..., {', '.join(map(str, trailing))}] to match the "
            f"coefficient field, got shape {f.shape}"
        )
    return f


def _like(u, ref):
    """``u`` (float64 numpy) as the array kind of ``ref``, in its dtype when floating."""
    if torch.is_tensor(ref):
        dtype = ref.dtype if ref.is_floating_point() else torch.float64
        return torch.from_numpy(u).to(device=ref.device, dtype=dtype)
    dtype = np.asarray(ref).dtype
    return u.astype(dtype if np.issubdtype(dtype, np.floating) else np.float64, copy=False)


def darcy_operator(b):
    r"""The interior finite-difference matrix :math:`A` of :math:`-\nabla\cdot(b\nabla\,\cdot)`.

    Parameters
    ----------
    b : np.ndarray or torch.Tensor
        ``[n, n]`` permeability at the nodes, positive and finite, ``n >= 3``.

    Returns
    -------
    scipy.sparse.csr_array
        ``[m^2, m^2]`` float64, ``m = n - 2``: symmetric positive definite, such
        that ``A @ u[1:-1, 1:-1].reshape(-1) = f[1:-1, 1:-1].reshape(-1)`` for
        the discrete solution ``u`` (module docstring). Its inverse is the
        discrete Green's operator: ``u_int = A^{-1} f_int``.

    Raises
    ------
    ValueError
        When ``b`` is not a square ``[n, n]`` grid with ``n >= 3``, or is not
        positive and finite.
    """
    b = _coefficient("b", b)
    n = b.shape[0]
    m = n - 2
    inv_h2 = float(n - 1) ** 2
    bx = 2 * b[:-1] * b[1:] / (b[:-1] + b[1:])  # [n-1, n]: face between (i, j) and (i+1, j)
    by = 2 * b[:, :-1] * b[:, 1:] / (b[:, :-1] + b[:, 1:])  # [n, n-1]: (i, j)-(i, j+1)
    west, east = bx[:-1, 1:-1], bx[1:, 1:-1]  # faces of the interior nodes, each [m, m]
    south, north = by[1:-1, :-1], by[1:-1, 1:]
    idx = np.arange(m * m).reshape(m, m)
    # couplings between interior neighbours only; boundary neighbours (u = 0) add to the diagonal alone
    rows = [idx.ravel(), idx[:-1].ravel(), idx[:, :-1].ravel()]
    cols = [idx.ravel(), idx[1:].ravel(), idx[:, 1:].ravel()]
    vals = [(west + east + south + north).ravel(), -east[:-1].ravel(), -north[:, :-1].ravel()]
    rows, cols = np.concatenate(rows + cols[1:]), np.concatenate(cols + rows[1:])
    vals = np.concatenate(vals + vals[1:]) * inv_h2
    return sp.coo_array((vals, (rows, cols)), shape=(m * m, m * m)).tocsr()


def solve_darcy(b, f):
    r"""Solve :math:`-\nabla\cdot(b\nabla u) = f` on :math:`[0,1]^2` with :math:`u = 0` on the boundary.

    One sparse LU factorisation of :func:`darcy_operator` is shared by all
    right-hand sides, which are solved together.

    Parameters
    ----------
    b : np.ndarray or torch.Tensor
        ``[n, n]`` permeability at the nodes, positive and finite, ``n >= 3``.
    f : np.ndarray or torch.Tensor
        ``[..., n, n]`` sources at the nodes, finite. Values on boundary nodes
        are ignored (the boundary condition fixes ``u`` there).

    Returns
    -------
    np.ndarray or torch.Tensor
        ``u`` shaped like ``f``, zero on boundary nodes; the kind (numpy or
        torch, device) and floating dtype of ``f`` (float64 when ``f`` is
        integer). The arithmetic is float64.

    Raises
    ------
    ValueError
        For a bad ``b`` (see :func:`darcy_operator`), a non-finite ``f`` or a
        grid of ``f`` that differs from that of ``b``.
    """
    A = darcy_operator(b)
    n = np.shape(b)[0]
    m = n - 2
    src = _source("f", f, (n, n))
    lead = src.shape[:-2]
    rhs = src[..., 1:-1, 1:-1].reshape(-1, m * m).T  # [m^2, k]: every source is one column
    sol = splu(A.tocsc()).solve(np.ascontiguousarray(rhs))
    u = np.zeros(src.shape)
    u[..., 1:-1, 1:-1] = sol.T.reshape(*lead, m, m)
    return _like(u, f)
