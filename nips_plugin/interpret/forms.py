r"""Discrete operators as linear functions of their coefficient parameters.

Both discrete operators are *linear in coefficient parameters* :math:`\theta`,
:math:`A(\theta) = \sum_k \theta_k A_k` on the interior dofs, and
:math:`\theta` is a simple function of the nodal field :math:`b`:

* Darcy (:func:`~nips_plugin.data.solvers.darcy_operator`):
  :math:`A = h^{-2}\sum_{\text{faces } F} c_F\, d_F d_F^\top`, with
  :math:`d_F = e_P - e_Q` the difference across the face (only the interior
  end when the other is a boundary node); :math:`\theta` are the face
  conductances :math:`c_F = 2 b_P b_Q / (b_P + b_Q)` (harmonic mean).
* Elasticity (:func:`~nips_plugin.data.solvers.elasticity_operator`):
  :math:`K = \sum_{\text{cells}} E_{cell} K^{ref}_{cell}`, :math:`E_{cell}`
  the mean of the cell's four nodal values, hence
  :math:`K(E) = \sum_{\text{nodes } k} E_k K_k`: :math:`\theta = E` itself.

Every estimator of the hidden field (:mod:`.equation_fit`, :mod:`.pde_fit`)
builds quadratic data terms in :math:`\theta` from these forms.

Null directions: some fields are invisible to the discretisation, so no data
can fix them: the checkerboard :math:`(-1)^{i+j}` of the resistivity
:math:`1/b` (it cancels in every harmonic face mean), and the :math:`2n-1`
fields :math:`(-1)^{i+j}(a_i + c_j)` of the modulus (they cancel in every cell
mean, so only the cell means of :math:`E` are determined). A roughness
penalty :math:`\lambda\|\nabla_h b\|^2` (:func:`roughness`) picks the
smoothest of the equivalent fields.
"""

from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np
import scipy.sparse as sp

from ..data.solvers import elasticity_operator
from .greens import interior_dofs


@dataclass(frozen=True)
class OperatorForm:
    r"""A discrete operator linear in coefficient parameters, ``A(theta) = sum_k theta_k A_k``.

    Attributes
    ----------
    n : int
        Nodes per side.
    components : int
        Field components ``c`` (1 Darcy, 2 elasticity).
    rows, cols : np.ndarray
        ``[P]`` interior-dof indices of the structural entries of ``A``, sorted by row.
    phi : scipy.sparse.csr_array
        ``[P, n_params]``: the entry values are ``phi @ theta``.
    load : scipy.sparse.csr_array
        ``[n_int, N*c]``: the right-hand side of the equation is ``load @ f``
        for a full-grid load ``f`` (Darcy: the interior selection, elasticity:
        the consistent load matrix ``L``).
    pairs : tuple of np.ndarray
        Index pairs ``(a, b)`` of entries that share a row (the support of
        the strong-form normal matrix).
    coefficient : callable
        ``b [n*n] -> (theta [n_params], J [n_params, n*n] sparse)``: the
        parameters of the nodal field ``b`` and their Jacobian.
    """

    n: int
    components: int
    rows: np.ndarray
    cols: np.ndarray
    phi: sp.csr_array
    load: sp.csr_array
    pairs: tuple
    coefficient: object

    @classmethod
    def from_entries(cls, n, components, rows, cols, params, vals, n_params, load, coefficient):
        """Build the form from ``(row, col, param, value)`` contributions (duplicates add up)."""
        n_int = load.shape[0]
        keys, entry = np.unique(rows * n_int + cols, return_inverse=True)  # row-major order
        phi = sp.coo_array((vals, (entry, params)), shape=(len(keys), n_params)).tocsr()
        rows, cols = np.divmod(keys, n_int)
        # all ordered pairs of entries within each row
        start = np.searchsorted(rows, rows, "left")
        count = np.searchsorted(rows, rows, "right") - start
        a = np.repeat(np.arange(len(rows)), count)
        b = np.repeat(start, count) + np.arange(len(a)) - np.repeat(np.cumsum(count) - count, count)
        return cls(n, components, rows, cols, phi, load, (a, b), coefficient)

    @property
    def n_params(self):
        """Number of coefficient parameters."""
        return self.phi.shape[1]

    def assemble(self, theta):
        r"""``[n_int, n_int]`` sparse operator :math:`A(\theta)`."""
        return sp.csr_array((self.phi @ theta, (self.rows, self.cols)), shape=(self.load.shape[0],) * 2)

    def action(self, x):
        r"""``[n_int, n_params]`` sparse :math:`S` with :math:`S\theta = A(\theta)\,x` for ``x [n_int]``."""
        return self.selection.T @ sp.csr_array(self.phi.multiply(x[self.cols, None]))

    @cached_property
    def selection(self):
        """``[P, n_int]`` sparse: entry ``a`` of the structure sits in row ``rows[a]``."""
        return sp.csr_array((np.ones(len(self.rows)), (np.arange(len(self.rows)), self.rows)),
                            shape=(len(self.rows), self.load.shape[0]))

    @property
    def interior(self):
        """``[n_int]`` positions of the unknowns in the full component-major layout."""
        return interior_dofs(self.n, self.components)

    def normal_equations(self, C, D):
        r"""Normal matrix and right-hand side of :math:`\min_\theta \|A(\theta)X - Y\|_F^2`.

        Parameters
        ----------
        C : np.ndarray
            ``[n_int, n_int]`` :math:`X X^\top`.
        D : np.ndarray
            ``[n_int, n_int]`` :math:`Y X^\top`.

        Returns
        -------
        gram : np.ndarray
            ``[n_params, n_params]`` :math:`\Phi^\top Q \Phi`, with
            :math:`Q_{ab} = C_{col_a, col_b}` for entries ``a, b`` of one row
            (row ``r`` of :math:`A X` is :math:`\sum_{a \in r} A_a X_{col_a}`).
        rhs : np.ndarray
            ``[n_params]`` :math:`\Phi^\top (D_{row_a, col_a})_a`.
        """
        a, b = self.pairs
        Q = sp.csr_array((C[self.cols[a], self.cols[b]], (a, b)), shape=(len(self.rows),) * 2)
        return (self.phi.T @ Q @ self.phi).toarray(), self.phi.T @ D[self.rows, self.cols]

    def galerkin_equations(self, X, Y, V):
        r"""Normal equations of the tested residual :math:`\min_\theta \|V^\top(A(\theta)X - Y)\|_F^2`.

        Parameters
        ----------
        X, Y : np.ndarray
            ``[n_int, d]`` responses and right-hand sides.
        V : np.ndarray
            ``[n_int, n_test]`` orthonormal test functions.

        Returns
        -------
        gram, rhs : np.ndarray
            As :meth:`normal_equations`, accumulated one column of ``X`` at a
            time: :math:`V^\top A_k x = \sum_{a \in k} \Phi_{ak} V_{row_a} x_{col_a}`.
        """
        gram = np.zeros((self.phi.shape[1],) * 2)
        rhs = np.zeros(self.phi.shape[1])
        VY = V.T @ Y
        for i in range(X.shape[1]):
            Z = self.phi.T @ (V[self.rows] * X[self.cols, i, None])  # [n_params, n_test]
            gram += Z @ Z.T
            rhs += Z @ VY[:, i]
        return gram, rhs


def roughness(n):
    r"""``[n^2, n^2]`` graph Laplacian :math:`W^\top W` of the node grid (``W``: differences along edges)."""
    node = np.arange(n * n).reshape(n, n)
    tail = np.concatenate([node[:-1].ravel(), node[:, :-1].ravel()])
    head = np.concatenate([node[1:].ravel(), node[:, 1:].ravel()])
    edge = np.arange(len(tail))
    W = sp.coo_array((np.r_[np.ones(len(tail)), -np.ones(len(tail))], (np.r_[edge, edge], np.r_[tail, head])),
                     shape=(len(tail), n * n)).tocsr()
    return (W.T @ W).toarray()


def sine_modes(n, k, components):
    """``[c*(n-2)^2, c*k^2]`` orthonormal discrete sine modes ``sin(pi a x) sin(pi b y)``, ``a, b <= k``,
    per component: the eigenvectors of the uniform Dirichlet Laplacian, smoothest first."""
    m = n - 2
    s = np.sqrt(2.0 / (m + 1)) * np.sin(np.pi * np.outer(np.arange(1, m + 1), np.arange(1, k + 1)) / (m + 1))
    return np.kron(np.eye(components), np.kron(s, s))


@lru_cache(maxsize=8)
def darcy_form(n):
    """Darcy operator as a linear function of its face conductances (module docstring).

    The parameters are the faces touching an interior node: x-faces
    ``(i, j)-(i+1, j)`` and y-faces ``(i, j)-(i, j+1)``; the coefficient map
    is the harmonic mean of the nodal permeability at their two ends.
    """
    m = n - 2
    node = np.arange(n * n).reshape(n, n)
    p = np.concatenate([node[:-1, 1:-1].ravel(), node[1:-1, :-1].ravel()])
    q = np.concatenate([node[1:, 1:-1].ravel(), node[1:-1, 1:].ravel()])
    unknown = np.full(n * n, -1)
    unknown[interior_dofs(n)] = np.arange(m * m)
    P, Q = unknown[p], unknown[q]
    face = np.arange(len(p))
    # d_F d_F^T: +1 on the diagonal of each interior end, -1 between two interior ends
    ends = [(P, P, 1.0, P >= 0), (Q, Q, 1.0, Q >= 0), (P, Q, -1.0, (P >= 0) & (Q >= 0)),
            (Q, P, -1.0, (P >= 0) & (Q >= 0))]
    rows = np.concatenate([r[k] for r, _, _, k in ends])
    cols = np.concatenate([c[k] for _, c, _, k in ends])
    params = np.concatenate([face[k] for *_, k in ends])
    vals = np.concatenate([np.full(k.sum(), s) for _, _, s, k in ends]) * (n - 1.0) ** 2
    load = sp.csr_array((np.ones(m * m), (np.arange(m * m), interior_dofs(n))), shape=(m * m, n * n))

    def harmonic(b):
        bp, bq = b[p], b[q]
        s = bp + bq
        J = sp.csr_array((np.r_[2 * bq**2 / s**2, 2 * bp**2 / s**2], (np.r_[face, face], np.r_[p, q])),
                         shape=(len(face), n * n))
        return 2 * bp * bq / s, J

    return OperatorForm.from_entries(n, 1, rows, cols, params, vals, len(face), load, harmonic)


@lru_cache(maxsize=8)
def elasticity_form(n, nu):
    """Q1 stiffness as a linear function of the nodal modulus (module docstring).

    ``K_k = K(1 + e_k) - K(1)`` exactly, ``K`` being linear in ``E``: the
    solver's own assembly, one call per node.
    """
    base, load = elasticity_operator(np.ones((n, n)), nu)
    rows, cols, vals, params = [], [], [], []
    for k in range(n * n):
        E = np.ones(n * n)
        E[k] += 1.0
        Kk = (elasticity_operator(E.reshape(n, n), nu)[0] - base).tocoo()
        keep = np.abs(Kk.data) > 1e-12 * np.abs(Kk.data).max()  # rounding residue of untouched entries
        rows.append(Kk.row[keep])
        cols.append(Kk.col[keep])
        vals.append(Kk.data[keep])
        params.append(np.full(keep.sum(), k))
    identity = sp.eye_array(n * n, format="csr")
    return OperatorForm.from_entries(n, 2, *map(np.concatenate, (rows, cols, params, vals)), n * n,
                                      load.tocsr(), lambda E: (E, identity))


def operator_form(pde, n, nu):
    return darcy_form(n) if pde == "darcy" else elasticity_form(n, float(nu))
