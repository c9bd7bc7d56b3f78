r"""A local operator fitted to one context, and its inverse: the Green's operator of a local PDE.

The solution operators of PDEs discretised on a grid are inverses of *local*
operators. With ``u = 0`` on the boundary, every interior node ``x`` and
component ``c`` satisfy a stencil relation between the response ``u`` and the
load ``f`` of every pair,

.. math::

    \sum_{c'} \sum_{k \in S} a_{x c c' k}\, u_{c'}(x + k)
    \;=\; f_c(x) + \sum_{k \in S \setminus 0} g_{x c k}\, \big(f_c(x + k) - f_c(x)\big),

with ``S`` the neighbourhood (``"star"``: the node and its ``2D`` axis
neighbours; ``"box"``: its ``3^D`` neighbours) and ``g = 0`` when the load
is read pointwise (finite differences), ``g \ne 0`` for a consistent finite-element
load (``K u = L f``, ``L`` scaled to unit row sum: a constant load is read as itself, which
smooth loads on fine grids cannot fake with ``A -> 0``). Nothing else is assumed: no PDE form, no symmetry,
coefficients free per node (discontinuous media, advection). A context of
``d`` pairs gives, per node and component, ``d`` equations for the
``c_u |S| + (|S| - 1)`` unknowns (``|S| - 1`` fewer without the load
stencil), solved by least squares; the fitted operator's inverse
``G = A^{-1} B`` is a full-rank Green's operator (:class:`LocalOperatorFit`).

Which neighbourhood, and whether the fit is trusted at all, is decided from
the data (:func:`select_local_operator`): ``k``-fold cross-validation on the
context's own pairs (fit on the others, predict the held-out responses). Data
the relation does not hold for (noisy responses, whose stencil differences
are mostly noise; non-local operators; responses not zero on the boundary)
give large held-out errors, and the caller keeps its other prior. For noisy
responses the same stencil refined by its output error
(:data:`OUTPUT_ERROR_OPERATORS`, :mod:`.output_error`) is the fit to use.
"""

import collections
import hashlib
import itertools
import math

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import splu

from .output_error import OutputErrorFit, laplacian_values

#: neighbourhoods of the stencil relation
STENCILS = ("star", "box")

#: the local operators fitted by their equation error, which :func:`select_local_operator`
#: cross-validates by default: the stencil, ``+load`` with the load stencil
LOCAL_OPERATORS = ("star", "box", "star+load", "box+load")

#: the same stencils refined by their output error (:mod:`.output_error`): the fit of noisy
#: responses, about a second per 21x21 context (40 pairs)
OUTPUT_ERROR_OPERATORS = ("star/output", "box/output")

#: boundary responses up to this fraction of the interior's RMS: zero on the boundary up to
#: noise, for the output-error fit (which ignores them)
NOISY_BOUNDARY_TOLERANCE = 0.25

#: responses larger than this fraction of their maximum on the boundary nodes: the data
#: are not zero on the boundary, and no interior relation determines them there
BOUNDARY_TOLERANCE = 1e-6


def parse_local_operator(name):
    """``"box+load"`` -> ``("box", True, False)``: the stencil, whether the load side is fitted
    and whether the output error refines the stencil (``"star/output"``)."""
    if name not in LOCAL_OPERATORS + OUTPUT_ERROR_OPERATORS:
        raise ValueError(f"local operator must be one of {LOCAL_OPERATORS + OUTPUT_ERROR_OPERATORS}, "
                         f"got {name!r}")
    name, _, output = name.partition("/")
    stencil, _, load = name.partition("+")
    return stencil, bool(load), bool(output)


def is_output_error(name):
    """Whether local operator ``name`` (None: none) is refined by its output error."""
    return name is not None and parse_local_operator(name)[2]


def n_unknowns(name, n_dim, components):
    """Unknowns per node and component of local operator ``name``: ``c |S|`` (``+ |S| - 1``)."""
    stencil, load, _ = parse_local_operator(name)
    size = len(stencil_offsets(n_dim, stencil))
    return components * size + (size - 1) * load


def stencil_offsets(n_dim, stencil):
    """The neighbourhood ``S`` as offsets, the centre first: ``"star"`` (``2D + 1`` points) or
    ``"box"`` (``3^D``)."""
    if stencil == "star":
        axes = [tuple(s * (i == j) for j in range(n_dim)) for i in range(n_dim) for s in (-1, 1)]
        return [(0,) * n_dim] + axes
    if stencil == "box":
        box = [o for o in itertools.product((-1, 0, 1), repeat=n_dim) if any(o)]
        return [(0,) * n_dim] + box
    raise ValueError(f"stencil must be one of {STENCILS}, got {stencil!r}")


def _at(a, offset):
    """``a [..., *grid]`` at ``x + offset`` for the interior nodes ``x``, ``[..., *(grid - 2)]``."""
    index = tuple(slice(1 + o, n - 1 + o) for o, n in zip(offset, a.shape[-len(offset):]))
    return a[(Ellipsis,) + index]


def zero_on_boundary(u, noisy=False):
    """Whether responses ``u`` ``[d, c, *grid]`` vanish on the boundary nodes: relative to their
    maximum, or (``noisy``) up to noise, their RMS within :data:`NOISY_BOUNDARY_TOLERANCE` of
    the interior's."""
    inner = np.zeros(u.shape[2:], dtype=bool)
    inner[(slice(1, -1),) * inner.ndim] = True
    if noisy:
        boundary, interior = (np.sqrt(np.mean(u[..., m] ** 2)) for m in (~inner, inner))
        return bool(interior > 0 and boundary <= NOISY_BOUNDARY_TOLERANCE * interior)
    scale = np.abs(u).max()
    return bool(scale > 0 and np.abs(u[..., ~inner]).max() <= BOUNDARY_TOLERANCE * scale)


def _node_least_squares(X, y, ridge=1e-10):
    """Least squares per node, ``X [..., d, p]``, ``y [..., d]`` -> ``[..., p]``: normal equations of the
    unit-norm columns with a ``ridge`` (relative to their unit diagonal) for the nearly collinear
    columns, by Cholesky (10x faster than a batched SVD here, as accurate on exact data)."""
    scale = X.norm(dim=-2).clamp_min(torch.finfo(X.dtype).tiny)
    Xs = X / scale[..., None, :]
    gram = Xs.mT @ Xs + ridge * torch.eye(X.shape[-1], dtype=X.dtype)
    coef = torch.cholesky_solve(Xs.mT @ y[..., None], torch.linalg.cholesky(gram))
    return coef[..., 0] / scale


class LocalOperatorFit:
    """The local operator of the module docstring fitted to one context, and its inverse.

    Parameters
    ----------
    f_ctx : np.ndarray ``[d, c, *grid]``
        Context loads (``c`` components, ``D``-dimensional node grid, boundary nodes included).
    u_ctx : np.ndarray ``[d, c, *grid]``
        Context responses, zero on the boundary nodes.
    operator : str, default "box+load"
        One of :data:`LOCAL_OPERATORS`: the neighbourhood, and with ``+load`` the load
        side ``g`` fitted too (consistent finite-element loads; otherwise ``g = 0``);
        or of :data:`OUTPUT_ERROR_OPERATORS`: the stencil then refined by its output
        error (:class:`~.output_error.OutputErrorFit`; noisy responses, whose
        boundary values are ignored).

    Notes
    -----
    Each node's least-squares problem is solved with its columns scaled to unit
    norm (responses of smooth loads make the neighbours' columns nearly
    collinear), singular values below ``1e-12`` of the largest truncated. ``A``
    (``[c N_int, c N_int]``, ``N_int`` interior nodes) and ``B`` (``[c N_int, c N]``)
    are sparse; :meth:`apply` solves with one sparse LU factorisation, so the cost
    is linear in the grid up to the factorisation's fill-in.
    """

    def __init__(self, f_ctx, u_ctx, operator="box+load"):
        stencil, load_stencil, output_error = parse_local_operator(operator)
        self.operator = operator
        f, u = np.asarray(f_ctx, np.float64), np.asarray(u_ctx, np.float64)
        if f.shape != u.shape or f.ndim < 3:
            raise ValueError(f"f_ctx and u_ctx must both be [d, c, *grid], got {f.shape} and {u.shape}")
        d, c, *grid = f.shape
        self.grid_shape, self.components = tuple(grid), c
        self.offsets = stencil_offsets(len(grid), stencil)
        full = np.arange(c * math.prod(grid)).reshape(c, *grid)     # row index of a full-grid value
        interior = -np.ones((c, *grid), dtype=np.int64)             # unknown index, -1 on the boundary
        n_int = math.prod(n - 2 for n in grid)
        interior[(slice(None),) + (slice(1, -1),) * len(grid)] = np.arange(c * n_int).reshape(c, *(n - 2 for n in grid))
        # design per (component, interior node): responses of every component at every offset,
        # then minus the load of the same component at the other offsets
        cols = [_at(u[:, k], o) for k in range(c) for o in self.offsets]
        # the load side as differences to the centre: its row sum is fixed to 1 (a consistent load
        # averages f), not its centre, which smooth loads on fine grids let degenerate (A -> 0 with
        # a load stencil that annihilates smooth f)
        centre = [_at(f[:, j], self.offsets[0]) for j in range(c)]
        loads = [[centre[j] - _at(f[:, j], o) for o in self.offsets[1:]] for j in range(c)] if load_stencil else None
        X = torch.stack([torch.from_numpy(np.stack(cols + (loads[j] if load_stencil else []), -1).reshape(d, n_int, -1))
                         for j in range(c)]).transpose(1, 2)      # [c, N_int, d, p]
        y = torch.from_numpy(np.stack([centre[j].reshape(d, n_int) for j in range(c)])).mT
        coef = _node_least_squares(X, y).numpy()                  # [c, N_int, p]
        rows = np.arange(c * n_int).reshape(c, n_int)              # unknowns: component-major, interior nodes
        a_rows, a_cols, a_vals = [], [], []
        for k in range(c):
            for s, o in enumerate(self.offsets):
                neighbour = _at(interior[k], o).reshape(n_int)
                keep = neighbour >= 0                               # u = 0 on the boundary
                a_rows.append(rows[:, keep].ravel())
                a_cols.append(np.broadcast_to(neighbour[keep], (c, keep.sum())).ravel())
                a_vals.append(coef[:, keep, k * len(self.offsets) + s].ravel())
        size = c * n_int
        a_rows, a_cols, a_vals = (np.concatenate(a) for a in (a_rows, a_cols, a_vals))
        b_rows = [rows.ravel()]
        b_cols = [np.stack([_at(full[j], self.offsets[0]).ravel() for j in range(c)]).ravel()]
        g = coef[:, :, c * len(self.offsets):].reshape(size, -1) if load_stencil else np.zeros((size, 0))
        b_vals = [1.0 - g.sum(1)]
        if load_stencil:
            for s, o in enumerate(self.offsets[1:]):
                b_rows.append(rows.ravel())
                b_cols.append(np.stack([_at(full[j], o).ravel() for j in range(c)]).ravel())
                b_vals.append(g[:, s])
        self.B = sp.csr_matrix((np.concatenate(b_vals), (np.concatenate(b_rows), np.concatenate(b_cols))),
                               shape=(size, full.size))
        self._embed = np.stack([_at(full[j], self.offsets[0]).ravel() for j in range(c)]).ravel()
        if output_error:
            oe = OutputErrorFit(a_rows, a_cols, self.B @ f.reshape(d, -1).T, u.reshape(d, -1)[:, self._embed].T)
            a_vals = oe.refine(a_vals, laplacian_values(a_rows, a_cols, grid, c))
        self.A = sp.csc_matrix((a_vals, (a_rows, a_cols)), shape=(size, size))
        self._lu = None

    def apply(self, f_rows):
        """``G f = A^{-1} B f`` for loads as rows ``[m, c*N]`` (component-major, grid row-major),
        ``[m, c*N]``, zero on the boundary nodes. Raises ``RuntimeError`` if ``A`` is singular."""
        if self._lu is None:
            self._lu = splu(self.A)
        f_rows = np.asarray(f_rows, np.float64)
        out = np.zeros_like(f_rows)
        out[:, self._embed] = self._lu.solve(self.B @ f_rows.T).T
        return out

    def matrix(self):
        """The dense Green's operator ``[c*N, c*N]`` (``u = G f`` for full-grid rows)."""
        return self.apply(np.eye(self.B.shape[1])).T


def context_cv_error(f_ctx, u_ctx, predict, n_folds=5):
    """``k``-fold cross-validation error of a predictor built from part of a context.

    Parameters
    ----------
    f_ctx, u_ctx : np.ndarray ``[d, ...]``
    predict : callable
        ``predict(f_train, u_train, f_held) -> u_held`` (arrays shaped like the inputs).
    n_folds : int, default 5

    Returns
    -------
    float
        Mean relative L2 error of the held-out responses (``inf`` if ``predict`` raises
        ``RuntimeError`` or returns non-finite values).
    """
    d = len(f_ctx)
    folds = [np.arange(d)[i::n_folds] for i in range(min(n_folds, d))]
    errors = []
    for held in folds:
        train = np.setdiff1d(np.arange(d), held)
        try:
            pred = np.asarray(predict(f_ctx[train], u_ctx[train], f_ctx[held]), np.float64)
        except RuntimeError:
            return math.inf
        true = u_ctx[held].reshape(len(held), -1)
        err = np.linalg.norm(pred.reshape(len(held), -1) - true, axis=1) / np.linalg.norm(true, axis=1)
        if not np.all(np.isfinite(err)):
            return math.inf
        errors.append(err)
    return float(np.concatenate(errors).mean())


def select_local_operator(f_ctx, u_ctx, n_folds=5, candidates=LOCAL_OPERATORS):
    """The local operator (:class:`LocalOperatorFit`) that predicts the context's held-out pairs
    best, fitted to the whole context, and its cross-validation error.

    A candidate is cross-validated with ``n_folds`` folds, or with the fewest more that
    leave its training folds more pairs than it has unknowns per node (up to
    leave-one-out; skipped when even that does not), and skipped when the responses are
    not zero on the boundary (:func:`zero_on_boundary`; up to noise for the output-error
    candidates, :data:`OUTPUT_ERROR_OPERATORS`, which cost about ``n_folds + 1`` seconds
    per 21x21 context).

    Returns
    -------
    fit : LocalOperatorFit or None
    cv_error : float
        :func:`context_cv_error` of the chosen candidate (``inf`` when none applies).
    """
    f, u = np.asarray(f_ctx, np.float64), np.asarray(u_ctx, np.float64)
    if f.shape != u.shape:
        return None, math.inf
    d, c = f.shape[:2]
    best, best_error = None, math.inf
    for name in candidates:
        if not zero_on_boundary(u, noisy=is_output_error(name)):
            continue
        # more, smaller folds where n_folds would leave a node's fit underdetermined
        unknowns = n_unknowns(name, f.ndim - 2, c)
        folds = next((k for k in range(min(n_folds, d), d + 1) if d - math.ceil(d / k) > unknowns), None)
        if folds is None:
            continue
        error = context_cv_error(
            f, u, lambda a, b, q: LocalOperatorFit(a, b, name).apply(q.reshape(len(q), -1)), folds)
        if error < best_error:
            best, best_error = name, error
    if best is None:
        return None, math.inf
    return LocalOperatorFit(f, u, best), best_error


#: contexts whose fits :func:`local_operator_prior` keeps: evaluation asks for the same test
#: contexts again and again (every epoch, every split, clean and noisy targets), and a
#: training pool (:class:`~nips_plugin.data.loaders.InContextDataset`) for the same ones
FIT_CACHE_SIZE = 512

_fits = collections.OrderedDict()


def _cached_fit(operator, f, u):
    """:class:`LocalOperatorFit` of the context ``f, u`` (float64), kept by a digest of its
    values (least recently used dropped first); None where its output-error refinement finds
    every start singular."""
    key = (operator, f.shape, hashlib.sha1(f.tobytes()).hexdigest(), hashlib.sha1(u.tobytes()).hexdigest())
    if key in _fits:
        _fits.move_to_end(key)
        return _fits[key]
    try:
        fit = LocalOperatorFit(f, u, operator)
    except RuntimeError:
        fit = None
    _fits[key] = fit
    if len(_fits) > FIT_CACHE_SIZE:
        _fits.popitem(last=False)
    return fit


@torch.no_grad()
def local_operator_prior(f_ctx, u_ctx, operator, rows):
    """``G r`` of each context's fitted local operator for rows ``r``, batched, as torch tensors.

    Parameters
    ----------
    f_ctx, u_ctx : torch.Tensor ``[B, d, c, *grid]``
    operator : str
        One of :data:`LOCAL_OPERATORS` or :data:`OUTPUT_ERROR_OPERATORS`.
    rows : torch.Tensor ``[B, m, c*N]``

    Returns
    -------
    prior : torch.Tensor
        Like ``rows`` (zeros where not used); float64 fit, cast back.
    used : torch.Tensor ``[B]`` bool
        False where the context's responses are not zero on the boundary, its fit is
        singular or gives non-finite values: the caller's other prior applies there.
    """
    prior, used = torch.zeros_like(rows), torch.zeros(len(rows), dtype=torch.bool, device=rows.device)
    noisy = is_output_error(operator)
    for b in range(len(rows)):
        f, u = (t[b].detach().cpu().double().numpy() for t in (f_ctx, u_ctx))
        if not zero_on_boundary(u, noisy):
            continue
        fit = _cached_fit(operator, f, u)
        if fit is None:
            continue
        try:
            out = fit.apply(rows[b].detach().cpu().double().numpy())
        except RuntimeError:  # A singular
            continue
        if np.all(np.isfinite(out)):
            prior[b], used[b] = torch.from_numpy(out).to(rows), True
    return prior, used


def output_error_prediction(f_ctx, u_ctx, operator, rows, y, learned=None):
    """``y``, the predictions for ``rows`` ``[B, m, c*N]``, where no output-error local operator
    applies (or ``operator`` is none); where one does, it is the context's fit itself: ``G rows``
    plus ``learned`` (a learned kernel on the residual, if any), without the exact fit on the
    context's span, which would pass its noise on."""
    if not is_output_error(operator):
        return y
    local, used = local_operator_prior(f_ctx, u_ctx, operator, rows)
    return torch.where(used[:, None, None], local if learned is None else local + learned, y)
