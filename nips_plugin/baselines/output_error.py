r"""A local operator refined by its output error: the fit of a noisy context.

The equation-error fit of :mod:`.local_operator` solves, node by node,
``A u_i ~ B f_i``: exact on clean responses, useless on noisy ones, since the
stencil differentiates the responses twice and so amplifies their noise by
about ``h^-2``. The *output error* measures the misfit where the noise is, in
the responses,

.. math::

    \min_\theta\; \|A(\theta)^{-1} B F - U\|_F^2 ,

over the entries :math:`\theta` of ``A`` on its stencil (``B`` kept from the
equation-error fit; ``F`` ``[N, d]`` the context loads, ``U`` ``[N_int, d]`` its
responses on the interior nodes, where ``u = 0`` on the boundary is assumed and
the boundary values, which then carry only noise, are ignored). For Gaussian
noise it is the likelihood of the context. On clean data the equation-error fit
is its minimum (zero residual), so the refinement starts there and stops at
once: the noise-free limit is the exact fit.

It is minimised by Levenberg–Marquardt, its steps by preconditioned conjugate
gradients on the Gauss–Newton matrix without forming it. With
:math:`W = A^{-1} B F` and :math:`R = W - U`,

.. math::

    J\delta = -A^{-1} (\delta A)\, W,\qquad
    (J^\top V)_e = -\big(A^{-\top} V\big)_{r_e} \cdot W_{c_e}

for the entry ``e`` at row ``r_e``, column ``c_e``: one sparse solve with ``A``
or ``A^T`` (one LU factorisation per iterate) per product, so a step costs
about ``2 x cg_iter`` solves with ``d`` right-hand sides, linear in the grid up
to the factorisation's fill-in. The preconditioner is the Gauss–Newton
diagonal, :math:`\|A^{-1}e_{r_e}\|^2 \|W_{c_e}\|^2`, the column norms of
:math:`A^{-1}` estimated from random probes.

The start is the better, in output error, of the equation-error fit and the
Laplacian on the same stencil scaled to the context (the equation-error fit of
noisy data is often singular or far off).
"""

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

#: random probes estimating the column norms of ``A^{-1}`` (the preconditioner)
PRECONDITIONER_PROBES = 16


def laplacian_values(rows, cols, grid_shape, components):
    """Entries of the ``2 D``-point Dirichlet Laplacian (unit spacing) on a stencil pattern
    over the interior dofs (component-major, row-major nodes): ``2 D`` on the diagonal, -1
    for axis neighbours of the same component, 0 elsewhere."""
    interior = tuple(n - 2 for n in grid_shape)
    n_int = int(np.prod(interior))

    def split(index):
        return index // n_int, np.stack(np.unravel_index(index % n_int, interior), -1)

    (cr, xr), (cc, xc) = split(rows), split(cols)
    distance = np.abs(xr - xc).sum(-1)
    return np.where(cr != cc, 0.0, np.where(distance == 0, 2.0 * len(grid_shape), -1.0 * (distance == 1)))


class OutputErrorFit:
    """Minimise the output error of a local operator's stencil entries (module docstring).

    Parameters
    ----------
    rows, cols : np.ndarray ``[p]``
        The stencil pattern: ``A``'s entries over the interior dofs.
    loads : np.ndarray ``[N_int, d]``
        ``B F``, the context's loads as the relation reads them.
    responses : np.ndarray ``[N_int, d]``
        The context's responses on the interior dofs.
    """

    def __init__(self, rows, cols, loads, responses):
        self.rows, self.cols = rows, cols
        self.loads, self.responses = loads, responses
        self.size = len(loads)
        self.scale = float(np.sum(responses**2))
        # pairs of entries in the same row: the preconditioner's blocks
        incidence = sp.csr_matrix((np.ones(len(rows)), (rows, np.arange(len(rows)))), shape=(len(loads), len(rows)))
        self.pairs = (incidence.T @ incidence).tocoo().coords

    def matrix(self, values):
        return sp.csc_matrix((values, (self.rows, self.cols)), shape=(self.size, self.size))

    def state(self, values):
        """``(lu, W, R, loss)`` at ``values``; None where ``A`` is singular or the
        responses are not finite."""
        try:
            lu = splu(self.matrix(values))
        except RuntimeError:
            return None
        W = lu.solve(self.loads)
        if not np.all(np.isfinite(W)):
            return None
        R = W - self.responses
        return lu, W, R, float(np.sum(R**2)) / self.scale

    def jacobian(self, lu, W):
        """``J`` and ``J^T`` at the iterate with factorisation ``lu`` and responses ``W``."""
        rows, cols = self.rows, self.cols

        def forward(delta):
            return -lu.solve(sp.csr_matrix((delta, (rows, cols)), shape=(self.size, self.size)) @ W)

        def adjoint(V):
            Z = lu.solve(V, trans="T")
            return -np.einsum("ed,ed->e", Z[rows], W[cols])
        return forward, adjoint

    def blocks(self, lu, W, seed=0):
        """The Gauss–Newton matrix's blocks of entries in one row, ``[p, p]`` sparse: for entries
        ``e, e'`` of row ``r``, ``||A^{-1} e_r||^2 W_{c_e} . W_{c_e'}``, the column norms of
        ``A^{-1}`` from random probes."""
        Z = np.random.default_rng(seed).standard_normal((self.size, PRECONDITIONER_PROBES))
        column_norms = np.mean(lu.solve(Z, trans="T") ** 2, axis=1)
        e1, e2 = self.pairs
        values = column_norms[self.rows[e1]] * np.einsum("ed,ed->e", W[self.cols[e1]], W[self.cols[e2]])
        return sp.csc_matrix((values, (e1, e2)), shape=(len(self.rows),) * 2)

    def refine(self, *starts):
        """:meth:`minimise` from the best of ``starts`` (entries; the Laplacian's is scaled to
        the context, :func:`laplacian_values`): the entries. Raises ``RuntimeError`` when
        every start is singular."""
        candidates = []
        for values in starts:
            start = self.state(values)
            if start is not None:  # the scale minimising the output error along this start
                W = start[1]
                values = values * np.sum(W * W) / np.sum(W * self.responses)
                candidates.append((self.state(values), values))
        candidates = [(s[3], v) for s, v in candidates if s is not None]
        if not candidates:
            raise RuntimeError("every starting operator is singular")
        return self.minimise(min(candidates, key=lambda c: c[0])[1])[0]

    def minimise(self, values, max_iter=100, tol=1e-3, cg_iter=40):
        """Levenberg–Marquardt from ``values``; returns the entries and their relative loss
        ``||R||^2 / ||U||^2``."""
        current = self.state(values)
        if current is None:
            raise RuntimeError("the starting operator is singular")
        damping = 1e-2
        for _ in range(max_iter):
            lu, W, R, loss = current
            forward, adjoint = self.jacobian(lu, W)
            gradient = adjoint(R)
            blocks = self.blocks(lu, W)
            diagonal = np.maximum(blocks.diagonal(), 1e-30 * blocks.diagonal().max())
            while damping < 1e8:
                preconditioner = splu((blocks + sp.diags(damping * diagonal)).tocsc())
                step = _pcg(lambda v: adjoint(forward(v)) + damping * diagonal * v, -gradient,
                            preconditioner.solve, cg_iter)
                trial = self.state(values + step)
                if trial is not None and trial[3] < loss:
                    break
                damping *= 10
            else:  # no step decreases the loss: a minimum up to rounding
                break
            values, current, damping = values + step, trial, max(damping / 3, 1e-6)
            if loss - trial[3] <= tol * loss:
                break
        return values, current[3]


def _pcg(apply, b, precondition, max_iter, rtol=1e-2):
    """Preconditioned conjugate gradients for ``apply(x) = b`` from zero (an inexact step:
    relative residual ``rtol`` or ``max_iter`` iterations)."""
    x = np.zeros_like(b)
    r = b.copy()
    z = precondition(r)
    p = z.copy()
    rz = r @ z
    target = rtol * np.linalg.norm(b)
    for _ in range(max_iter):
        q = apply(p)
        alpha = rz / (p @ q)
        x += alpha * p
        r -= alpha * q
        if np.linalg.norm(r) <= target:
            break
        z = precondition(r)
        rz, rz_old = r @ z, rz
        p = z + (rz / rz_old) * p
    return x
