r"""Plane-strain linear elasticity on the unit square, clamped on the whole boundary.

.. math::

    -\nabla\cdot\sigma(u) = f, \qquad
    \sigma = \lambda\,\mathrm{tr}(\varepsilon)\,I + 2\mu\,\varepsilon, \qquad
    \varepsilon = \tfrac12(\nabla u + \nabla u^T), \qquad u = 0 \text{ on } \partial[0,1]^2,

with :math:`\lambda = E\nu / ((1+\nu)(1-2\nu))` and :math:`\mu = E / (2(1+\nu))`.

Grid and component convention
-----------------------------
The node grid is that of :mod:`~nips_plugin.data.solvers.darcy`: array index
``(i, j)`` is the point :math:`(x, y) = (i h, j h)`, :math:`h = 1/(n-1)`;
array axis 0 is ``x``. Vector fields are ``[..., 2, n, n]`` with component 0
along ``x`` (grid axis 0) and component 1 along ``y`` (grid axis 1), for both
the body force ``f`` and the displacement ``u``. Interior degrees of freedom
are component-major, ``u_int = u[:, 1:-1, 1:-1].reshape(-1)``: all ``x``
displacements of the interior nodes (row-major), then all ``y`` ones.

Discretisation
--------------
Bilinear (Q1) finite elements on the :math:`(n-1)^2` square cells. The modulus
is constant per cell, the mean of its four nodal values (the trapezoidal-rule
average); :math:`\nu` is uniform. Element matrices are integrated with 2x2
Gauss quadrature, which is exact for them. The load is *consistent*: the
nodal body force is read as its Q1 interpolant :math:`f_h`, and the load of a
test function :math:`v` is :math:`\int f_h \cdot v`, i.e. ``rhs = L f`` with
the Q1 mass matrix ``L``. Nodal displacements converge at second order for
smooth data.
"""

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from .darcy import _coefficient, _like, _source

# local node order of a cell (i, j): offsets (0,0), (1,0), (1,1), (0,1) in (i, j)
_XI = np.array([-1.0, 1.0, 1.0, -1.0])
_ETA = np.array([-1.0, -1.0, 1.0, 1.0])


def _reference_matrices(nu):
    r"""Q1 element matrices of one square cell.

    Returns
    -------
    stiffness : np.ndarray
        ``[8, 8]`` for :math:`E = 1`, element dofs ordered
        ``[u_x at the 4 nodes, u_y at the 4 nodes]``. In 2-D it does not
        depend on the cell size :math:`h`.
    mass : np.ndarray
        ``[4, 4]`` scalar mass matrix :math:`\int N_a N_b` for :math:`h = 1`
        (it scales as :math:`h^2`).
    """
    g = np.array([-1.0, 1.0]) / np.sqrt(3.0)
    xi, eta = (a.ravel() for a in np.meshgrid(g, g, indexing="ij"))  # 4 Gauss points, weight 1
    xi, eta = xi[:, None], eta[:, None]
    shape = (1 + _XI * xi) * (1 + _ETA * eta) / 4  # [q, a]
    # d/dx = (2/h) d/dxi with h = 1; the Jacobian determinant is h^2/4 = 1/4
    dx = 2 * _XI * (1 + _ETA * eta) / 4
    dy = 2 * _ETA * (1 + _XI * xi) / 4
    B = np.zeros((4, 3, 8))  # Voigt strain (eps_xx, eps_yy, 2 eps_xy) from element dofs
    B[:, 0, :4] = dx
    B[:, 1, 4:] = dy
    B[:, 2, :4] = dy
    B[:, 2, 4:] = dx
    D = np.array([[1 - nu, nu, 0.0], [nu, 1 - nu, 0.0], [0.0, 0.0, (1 - 2 * nu) / 2]])
    D /= (1 + nu) * (1 - 2 * nu)
    stiffness = np.einsum("qia,ij,qjb->ab", B, D, B) / 4
    mass = np.einsum("qa,qb->ab", shape, shape) / 4
    return stiffness, mass


def _assemble(dofs, local, scale, size):
    """Sparse ``[size, size]`` sum of ``scale[c] * local`` placed at ``dofs[c]`` for every cell ``c``."""
    data = scale[:, None, None] * local
    rows = np.broadcast_to(dofs[:, :, None], data.shape)
    cols = np.broadcast_to(dofs[:, None, :], data.shape)
    return sp.coo_array((data.ravel(), (rows.ravel(), cols.ravel())), shape=(size, size)).tocsr()


def elasticity_operator(E, nu=0.3):
    r"""Q1 stiffness on the interior dofs and the consistent load matrix.

    Parameters
    ----------
    E : np.ndarray or torch.Tensor
        ``[n, n]`` Young's modulus at the nodes, positive and finite, ``n >= 3``.
    nu : float, default 0.3
        Poisson ratio, uniform, :math:`-1 < \nu < 1/2`.

    Returns
    -------
    K : scipy.sparse.csr_array
        ``[2 m^2, 2 m^2]`` float64 stiffness, ``m = n - 2``, on the interior
        dofs ``u[:, 1:-1, 1:-1].reshape(-1)`` (module docstring); symmetric
        positive definite.
    L : scipy.sparse.csr_array
        ``[2 m^2, 2 n^2]`` load matrix: ``L @ f.reshape(-1)`` is the
        right-hand side for a nodal body force ``f`` of shape ``[2, n, n]``
        (boundary nodes included, they load the adjacent cells). It is the Q1
        mass matrix, rows restricted to the interior nodes, one block per
        component. The discrete solution solves ``K u_int = L f``, so the
        discrete Green's operator is :math:`K^{-1} L`.

    Raises
    ------
    ValueError
        When ``E`` is not a square ``[n, n]`` grid with ``n >= 3``, is not
        positive and finite, or ``nu`` is outside :math:`(-1, 1/2)`.
    """
    E = _coefficient("E", E)
    if not -1 < nu < 0.5:
        raise ValueError(f"the Poisson ratio nu must lie in (-1, 0.5), got {nu}")
    n = E.shape[0]
    stiffness, mass = _reference_matrices(float(nu))
    node = np.arange(n * n).reshape(n, n)
    nodes = node[:-1, :-1].reshape(-1, 1) + np.array([0, n, n + 1, 1])  # [cells, 4], local order
    E_cell = (E[:-1, :-1] + E[1:, :-1] + E[1:, 1:] + E[:-1, 1:]).ravel() / 4
    K = _assemble(np.concatenate([nodes, nodes + n * n], axis=1), stiffness, E_cell, 2 * n * n)
    M = _assemble(nodes, mass, np.full(len(nodes), (n - 1.0) ** -2), n * n)
    interior = node[1:-1, 1:-1].ravel()
    dofs = np.concatenate([interior, interior + n * n])
    M_int = M[interior]
    return K[dofs][:, dofs], sp.block_diag([M_int, M_int], format="csr")


def solve_elasticity(E, f, nu=0.3):
    r"""Solve plane-strain elasticity :math:`-\nabla\cdot\sigma(u) = f`, :math:`u = 0` on the boundary.

    One sparse LU factorisation of the stiffness (:func:`elasticity_operator`)
    is shared by all loads, which are solved together.

    Parameters
    ----------
    E : np.ndarray or torch.Tensor
        ``[n, n]`` Young's modulus at the nodes, positive and finite, ``n >= 3``.
    f : np.ndarray or torch.Tensor
        ``[..., 2, n, n]`` nodal body force, components ``(f_x, f_y)``
        (module docstring), finite.
    nu : float, default 0.3
        Poisson ratio, uniform, :math:`-1 < \nu < 1/2`.

    Returns
    -------
    np.ndarray or torch.Tensor
        Displacement ``u`` shaped like ``f``, components ``(u_x, u_y)``, zero
        on boundary nodes; the kind (numpy or torch, device) and floating
        dtype of ``f`` (float64 when ``f`` is integer). The arithmetic is
        float64.

    Raises
    ------
    ValueError
        For a bad ``E`` or ``nu`` (see :func:`elasticity_operator`), a
        non-finite ``f`` or an ``f`` not shaped ``[..., 2, n, n]``.
    """
    K, L = elasticity_operator(E, nu)
    n = np.shape(E)[0]
    m = n - 2
    src = _source("f", f, (2, n, n))
    lead = src.shape[:-3]
    rhs = L @ src.reshape(-1, 2 * n * n).T  # [2 m^2, k]: every load is one column
    sol = splu(K.tocsc()).solve(rhs)
    u = np.zeros(src.shape)
    u[..., 1:-1, 1:-1] = sol.T.reshape(*lead, 2, m, m)
    return _like(u, f)
