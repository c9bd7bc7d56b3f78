r"""Exact discrete solution operators (Green's operators) of the benchmark PDEs.

For a system with hidden field :math:`b` the discrete solution is linear in the
load, :math:`u = G f`. :func:`greens_operator` returns :math:`G` as a dense
matrix in the layout of :meth:`~nips_plugin.models.incontext.InContextOperator.extract_kernel`:
``[N*c_u, N*c_f]``, ``N = n*n``, rows and columns component-major and the
grid row-major, i.e. index ``k*N + i*n + j`` is component ``k`` at node
``(i, j)``. The full node grid is used, boundary nodes included: rows of
boundary nodes are zero (``u = 0`` there), and so are the Darcy columns of
boundary nodes (the solver ignores ``f`` there). No quadrature weight is
folded in: ``G`` maps nodal loads to nodal responses, as the physical-unit
kernel of :class:`~nips_plugin.interpret.InContextPredictor` does.

Both operators are symmetric positive (semi-)definite in the right inner
product: the Darcy one is symmetric, the elasticity one is :math:`K^{-1} L`
with symmetric :math:`K` and mass matrix :math:`L`.
"""

import numpy as np
from scipy.linalg import cho_factor, cho_solve
from threadpoolctl import threadpool_limits

from ..data.solvers import darcy_operator, elasticity_operator
from ..data.tasks import TaskSet

PDES = {"darcy": "permeability", "elasticity": "modulus"}
"""The supported PDEs and the name of their hidden field in ``TaskSet.params``."""


def interior_dofs(n, components=1):
    """Indices of the interior-node values of a field in the component-major layout.

    Parameters
    ----------
    n : int
        Nodes per side.
    components : int
        Components ``c`` of the field.

    Returns
    -------
    np.ndarray
        ``[c*(n-2)^2]`` int64 indices into ``f.reshape(-1)`` for ``f`` of shape
        ``[c, n, n]``: component-major, then row-major over the interior
        nodes, which is the unknown ordering of both solvers.
    """
    node = np.arange(n * n).reshape(n, n)[1:-1, 1:-1].ravel()
    return np.concatenate([node + k * n * n for k in range(components)])


def _solve_spd(A, rhs):
    """``A^{-1} rhs`` for a sparse SPD ``A`` and a dense ``rhs``.

    ``G`` is dense anyway: one dense Cholesky factorisation on one BLAS thread
    was about 20x faster than SuperLU's column-by-column solves (elasticity,
    29x29 nodes) and does not oversubscribe a shared machine.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        return cho_solve(cho_factor(A.toarray()), rhs)


def darcy_greens(b):
    r"""The discrete Green's operator of :math:`-\nabla\cdot(b\nabla u) = f`, :math:`u = 0` on the boundary.

    :math:`u_{int} = A^{-1} f_{int}` with :math:`A` from
    :func:`~nips_plugin.data.solvers.darcy_operator`, embedded in the full
    node grid.

    Parameters
    ----------
    b : np.ndarray or torch.Tensor
        ``[n, n]`` nodal permeability, positive.

    Returns
    -------
    np.ndarray
        ``[n^2, n^2]`` float64 ``G`` with ``G @ f.reshape(-1)`` equal to
        ``solve_darcy(b, f).reshape(-1)``; symmetric, zero on boundary rows
        and columns.
    """
    A = darcy_operator(b)
    n = np.shape(b)[0]
    inner = interior_dofs(n)
    G = np.zeros((n * n, n * n))
    G[np.ix_(inner, inner)] = _solve_spd(A, np.eye(A.shape[0]))
    return G


def elasticity_greens(E, nu=0.3):
    r"""The discrete Green's operator :math:`K^{-1} L` of clamped plane-strain elasticity.

    With :math:`K, L` from :func:`~nips_plugin.data.solvers.elasticity_operator`
    (stiffness on the interior dofs, consistent Q1 load matrix). The solver's
    interior dofs are already component-major (all ``u_x``, then all
    ``u_y``), so its rows only need placing at the interior nodes of each
    component block.

    Parameters
    ----------
    E : np.ndarray or torch.Tensor
        ``[n, n]`` nodal Young's modulus, positive.
    nu : float, default 0.3
        Poisson ratio.

    Returns
    -------
    np.ndarray
        ``[2 n^2, 2 n^2]`` float64 ``G`` with ``G @ f.reshape(-1)`` equal to
        ``solve_elasticity(E, f, nu).reshape(-1)`` for ``f`` of shape
        ``[2, n, n]``; zero on boundary rows. Boundary columns are not zero:
        a load at a boundary node acts on the adjacent cells.
    """
    K, L = elasticity_operator(E, nu)
    n = np.shape(E)[0]
    G = np.zeros((2 * n * n, 2 * n * n))
    G[interior_dofs(n, 2)] = _solve_spd(K, L.toarray())
    return G


def resolve_pde(tasks_or_pde, nu=None):
    """The PDE name and Poisson ratio of a TaskSet or a PDE name.

    Parameters
    ----------
    tasks_or_pde : TaskSet or str
        A TaskSet (its ``attrs["pde"]`` and ``attrs["nu"]``) or ``"darcy"`` /
        ``"elasticity"``.
    nu : float, optional
        Overrides the Poisson ratio; default ``attrs["nu"]`` or 0.3.

    Returns
    -------
    pde : str
    nu : float
    """
    attrs = tasks_or_pde.attrs if isinstance(tasks_or_pde, TaskSet) else {"pde": tasks_or_pde}
    pde = attrs.get("pde")
    if pde not in PDES:
        raise ValueError(f"unknown PDE {pde!r}; expected one of {sorted(PDES)} "
                         "(a TaskSet's attrs['pde'] or the name itself)")
    return pde, float(attrs.get("nu", 0.3) if nu is None else nu)


def greens_operator(tasks_or_pde, hidden_field, nu=None):
    """The exact discrete solution operator ``G`` (``u = G f``) of one system.

    Parameters
    ----------
    tasks_or_pde : TaskSet or str
        Which PDE (see :func:`resolve_pde`).
    hidden_field : np.ndarray or torch.Tensor
        ``[n, n]`` nodal permeability (Darcy) or Young's modulus (elasticity).
    nu : float, optional
        Poisson ratio of elasticity; default the TaskSet's ``attrs["nu"]``, else 0.3.

    Returns
    -------
    np.ndarray
        ``[N*c_u, N*c_f]`` float64 (module docstring): :func:`darcy_greens`
        or :func:`elasticity_greens`.
    """
    pde, nu = resolve_pde(tasks_or_pde, nu)
    return darcy_greens(hidden_field) if pde == "darcy" else elasticity_greens(hidden_field, nu)
