r"""The equation-error fit: the nodal field minimising a quadratic data term in its parameters.

Given the normal equations :math:`(G, r)` of a data term
:math:`\|A(\theta) X - Y\|_F^2` (:class:`~.forms.OperatorForm`), the field
minimises :math:`\theta^\top G\theta - 2 r^\top\theta + \lambda\|\nabla_h b\|^2`
with :math:`\theta = \theta(b)` (:func:`fit_field`); :func:`fit_pairs` for load/response
pairs: the context pairs of :mod:`.classical`, the kernel's probes or eigenpairs of :mod:`.recovery`.

Why fit the nodal field directly rather than the faces first: fitting the
face conductances by (non-negative) least squares and then the nodes to them
(the harmonic mean is linear in the resistivity :math:`1/b`) is exact for an
exact kernel, but the face fit has no regulariser, and with noisy data its
outliers made the node step blow up (errors of 100x, measured); a penalty on
the nodal field is natural and robust, and the Gauss–Newton iterations keep it exact.
"""

import numpy as np
from scipy.linalg import cho_factor, cho_solve

from .forms import roughness, sine_modes


def data_term(form, X, Y, test_modes):
    """Normal equations of ``||A(theta) X - Y||``: strong form, or tested by the
    ``test_modes`` x ``test_modes`` smoothest sine modes per component (``test_modes > 0``)."""
    if test_modes:
        V = sine_modes(form.n, min(test_modes, form.n - 2), form.components)
        return form.galerkin_equations(X, Y, V)
    return form.normal_equations(X @ X.T, Y @ X.T)


def fit_pairs(form, f_rows, u_rows, test_modes, smoothing):
    """The field of load/response pairs as rows ``[m, c*n^2]`` (physical units, full grid):
    ``A(b) u_i = B f_i`` by :func:`data_term` and :func:`fit_field`."""
    X = u_rows[:, form.interior].T
    return fit_field(form, *data_term(form, X, form.load @ f_rows.T, test_modes), smoothing)


def fit_field(form, gram, rhs, smoothing, max_iter=100, tol=1e-6):
    r"""The nodal field ``b`` minimising the penalised data term, ``theta = theta(b)``:

    .. math:: F(b) = \theta^\top G\theta - 2 r^\top\theta + \lambda b^\top L b .

    Levenberg–Marquardt on the coefficient map :math:`\theta(b)` (Jacobian
    ``J``), from a uniform field. A step solves
    :math:`(J^\top G J + \lambda L + \mu\,\mathrm{diag}) \delta = -\nabla F/2`
    and is kept if :math:`F` decreases (then :math:`\mu` shrinks), else
    :math:`\mu` grows. With :math:`\mu = 0`, the first try, it is the
    Gauss–Newton step: exact in one step for elasticity (:math:`\theta = E`),
    and for Darcy the linear fit with arithmetic face means, since the
    harmonic mean linearises to the arithmetic one at a uniform field. The
    damping matters for Darcy: the checkerboard resistivity is invisible to
    the data (module docstring), so undamped steps along it grow without
    bound. The field is projected onto :math:`b \ge 10^{-3}\max b` after
    every step (a permeability or modulus is positive; the harmonic mean
    needs it). :math:`\lambda` = ``smoothing`` :math:`\mathrm{tr}(J^\top G J)/\mathrm{tr}(L)`
    at the start.

    Returns
    -------
    np.ndarray
        ``[n, n]`` float64.
    """
    L = roughness(form.n)
    b = np.ones(form.n**2)
    J = form.coefficient(b)[1]
    lam = smoothing * np.trace(np.asarray(J.T @ gram @ J)) / np.trace(L)

    def objective(b):
        theta = form.coefficient(b)[0]
        return theta @ gram @ theta - 2 * rhs @ theta + lam * b @ L @ b

    value, mu = objective(b), 0.0
    for _ in range(max_iter):
        theta, J = form.coefficient(b)
        H = np.asarray(J.T @ gram @ J) + lam * L
        grad = J.T @ (gram @ theta - rhs) + lam * L @ b
        while mu < 1e12:  # shorter and shorter steps until F decreases
            new = b + cho_solve(cho_factor(H + mu * np.diag(np.diag(H))), -grad)
            if not new.max() > 0:
                raise ValueError("the data do not determine a positive coefficient field")
            new = np.maximum(new, 1e-3 * new.max())
            new_value = objective(new)
            if new_value <= value:
                break
            mu = max(4 * mu, 1e-8)
        else:  # no step decreases F: a minimum up to rounding
            break
        mu /= 3
        done = np.linalg.norm(new - b) <= tol * np.linalg.norm(new)
        b, value = new, new_value
        if done:
            break
    return b.reshape(form.n, form.n)
