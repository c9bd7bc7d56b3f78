r"""The hidden coefficient field from a kernel ``u = M f`` (and the context pairs it came from).

The kernel's responses to smooth probe loads (or its eigenpairs
:math:`H v = w v`, interior block, symmetrised) are load/response pairs of the
system, fitted by the equation error (:mod:`.equation_fit`) with a roughness
penalty on the nodal field. The discretisation's null directions (:mod:`.forms`)
are the whole error of a recovery from the *exact* operator: 0.6% (relative L2, interior
nodes) for the Darcy preset's permeabilities (21x21, all phases right), 0.02%
for the elasticity preset's digits (29x29), more on coarse grids, where the
true field is rough at the grid scale (3.5% for a smooth modulus on 9x9, whose
cell means come back to 1e-8). ``smoothing`` is dimensionless:
:math:`\lambda` = ``smoothing`` :math:`\mathrm{tr}(J^\top G J) / \mathrm{tr}(L)`
with the data term's normal matrix :math:`G`, its Jacobian :math:`J` at the
uniform start and the grid Laplacian :math:`L`.
"""

import numpy as np
import torch
from scipy.linalg import eigh, solve
from threadpoolctl import threadpool_limits

from .equation_fit import data_term, fit_field, fit_pairs
from .forms import operator_form, sine_modes

#: the routes from a kernel to the field (:func:`recover_permeability`)
METHODS = ("probe", "equation", "inverse")


def as_float64(name, a):
    """Finite float64 numpy copy of an array or tensor."""
    a = np.asarray(a.detach().cpu() if torch.is_tensor(a) else a, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} has non-finite (NaN/inf) values")
    return a


#: sine modes per axis (and component) of the default probe loads
PROBE_MODES = 8


def probe_loads(probes, form):
    """Probe loads as full-grid rows ``[m, c*n^2]`` (zero on the boundary): the ``probes`` x
    ``probes`` smoothest sine modes per component, or the given loads ``[m, c, n, n]``."""
    n, c = form.n, form.components
    if isinstance(probes, (int, np.integer)) and not isinstance(probes, bool):
        if probes < 1:
            raise ValueError(f"probes must be a positive number of sine modes or loads [m, {c}, {n}, {n}], got {probes}")
        modes = sine_modes(n, min(int(probes), n - 2), c).T          # [m, c*(n-2)^2], interior dofs
        rows = np.zeros((len(modes), c * n * n))
        rows[:, form.interior] = modes
        return rows
    loads = as_float64("probes", probes)
    if loads.ndim != 4 or loads.shape[1:] != (c, n, n):
        raise ValueError(f"probe loads must be [m, {c}, {n}, {n}], got {loads.shape}")
    return loads.reshape(len(loads), -1)


# these small dense factorisations run many times faster on one BLAS thread, and do not
# oversubscribe a machine shared with other jobs
@threadpool_limits.wrap(limits=1, user_api="blas")
def recover_field(kernel, grid_shape, pde, nu, method, rcond, smoothing, test_modes, probes=PROBE_MODES):
    """Shared body of :func:`recover_permeability` and :func:`recover_modulus`."""
    kernel = as_float64("kernel", kernel)
    c = 1 if pde == "darcy" else 2
    if len(grid_shape) != 2 or grid_shape[0] != grid_shape[1] or grid_shape[0] < 4:
        raise ValueError(f"grid_shape must be a square 2-D grid (n, n) with n >= 4, got {tuple(grid_shape)}")
    n = int(grid_shape[0])
    if kernel.shape != (c * n * n,) * 2:
        raise ValueError(f"a {pde} kernel on a {n}x{n} grid must be [{c * n * n}, {c * n * n}] "
                         f"(component-major, {c} component(s)), got {kernel.shape}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    form = operator_form(pde, n, nu)
    if method == "probe":
        loads = probe_loads(probes, form)
        return fit_pairs(form, loads, loads @ kernel.T, test_modes, smoothing)
    inner = form.interior
    # H ~ A^{-1}, symmetrised: the kernel on the interior; elasticity's G = K^{-1} L also
    # needs the (symmetric) interior load block divided out
    H = kernel[np.ix_(inner, inner)]
    if pde == "elasticity":
        H = solve(form.load[:, inner].toarray(), H.T, assume_a="pos").T
    H = (H + H.T) / 2
    w, V = eigh(H)
    if not w.max() > 0:
        raise ValueError("the kernel has no positive eigenvalue on the interior nodes; it cannot be "
                         "the solution operator of an elliptic PDE")
    keep = w > rcond * w.max()
    V, w = V[:, keep], w[keep]
    if method == "inverse":
        gram, rhs = form.normal_equations(np.eye(len(inner)), (V / w) @ V.T)
    else:  # eigen-pairs as pseudo load/response pairs: A(b) (w v) = v
        gram, rhs = data_term(form, V * w, V, test_modes)
    return fit_field(form, gram, rhs, smoothing)


def recover_permeability(kernel, grid_shape, method="probe", rcond=1e-6, smoothing=1e-6, test_modes=0,
                         probes=PROBE_MODES):
    r"""Estimate the Darcy permeability :math:`b` from a kernel ``u = M f`` in physical units.

    With the roughness penalty :math:`\lambda\|\nabla_h b\|^2` (module docstring):

    * ``method="probe"`` (default): the kernel's responses to smooth probe loads
      :math:`p_j` (``probes``: the smoothest sine modes, or loads like the
      training inputs) are load/response pairs of the system, fitted like the
      context pairs of :func:`classical_recovery`:
      :math:`\min_b \sum_j \|A(b) M p_j - B p_j\|^2`. A learned kernel is only
      trustworthy on inputs like the ones it was trained on; the smooth probes
      ask it there.
    * ``method="equation"``: the eigenpairs of :math:`H`, the interior block of
      ``M`` symmetrised, with :math:`w > \mathrm{rcond}\, w_{max}`, as pairs,
      :math:`A(b)\,(w v) = v`: :math:`\min_b \|A(b) H - I\|_F^2` on the kept
      eigenspace. Every eigenpair counts alike, so the kernel's rough
      directions, which smooth training inputs never constrain, count as much
      as its smooth ones.
    * ``method="inverse"``: :math:`\hat A = V \mathrm{diag}(1/w) V^\top`
      (the pseudo-inverse on the kept spectrum), then
      :math:`\min_b \|A(b) - \hat A\|_F^2`.

    For an exact kernel all three give back :math:`b` up to the
    discretisation's invisible checkerboard mode: the operator is linear in
    the face conductances. For kernels fitted to contexts (the local operator,
    kernel errors 0.01-0.11) they differ: probes 0.98-1.00 log-correlation on
    two-phase elasticity and finer-solved Darcy systems where the eigenpairs
    gave -0.2-0.9 (``benchmarks`` in the README).

    Parameters
    ----------
    kernel : np.ndarray or torch.Tensor
        ``[n^2, n^2]`` physical-unit kernel in the layout of
        :func:`~nips_plugin.interpret.greens.greens_operator`.
    grid_shape : tuple of int
        ``(n, n)``, ``n >= 4``.
    method : {"probe", "equation", "inverse"}
    rcond : float, default 1e-6
        Relative cut of the kernel's spectrum (``"equation"``, ``"inverse"``).
    smoothing : float, default 1e-6
        Dimensionless roughness penalty (module docstring); raise it for
        inexact kernels (:func:`evaluate_system` uses ``1e-6`` plus the
        kernel's relative misfit on pairs outside its context).
    test_modes : int, default 0
        ``"probe"``, ``"equation"``: test the residual against this many sine
        modes per axis, as :func:`classical_recovery` does for noisy data
        (0: the strong form).
    probes : int or array ``[m, 1, n, n]``, default :data:`PROBE_MODES`
        ``"probe"``: that many smoothest sine modes per axis, or the probe loads.

    Returns
    -------
    np.ndarray
        ``[n, n]`` float64 nodal permeability. The four corner nodes, which no
        face touches, come from the roughness penalty alone; score the
        interior nodes.
    """
    return recover_field(kernel, grid_shape, "darcy", 0.3, method, rcond, smoothing, test_modes, probes)


def recover_modulus(kernel, grid_shape, nu=0.3, method="probe", rcond=1e-6, smoothing=1e-6, test_modes=0,
                    probes=PROBE_MODES):
    r"""Estimate the Young's modulus :math:`E` from an elasticity kernel ``u = M f`` in physical units.

    As :func:`recover_permeability`, for :math:`G = K^{-1} L` and
    :math:`K(E) = \sum_k E_k K_k`, linear in the nodal modulus: the probes'
    pairs fit :math:`K(E) M p = L p`; the eigen routes need the interior block of
    ``M`` times the inverse of the interior block of the load (mass) matrix
    ``L`` to estimate :math:`K^{-1}`. Only the cell means of :math:`E` are
    determined (module docstring).

    Parameters
    ----------
    kernel : np.ndarray or torch.Tensor
        ``[2 n^2, 2 n^2]`` physical-unit kernel (component-major).
    grid_shape : tuple of int
        ``(n, n)``, ``n >= 4``.
    nu : float, default 0.3
        Poisson ratio (known).
    method : {"probe", "equation", "inverse"}
    rcond : float, default 1e-6
    smoothing : float, default 1e-6
    test_modes : int, default 0
    probes : int or array ``[m, 2, n, n]``, default :data:`PROBE_MODES`

    Returns
    -------
    np.ndarray
        ``[n, n]`` float64 nodal modulus.
    """
    return recover_field(kernel, grid_shape, "elasticity", nu, method, rcond, smoothing, test_modes, probes)
