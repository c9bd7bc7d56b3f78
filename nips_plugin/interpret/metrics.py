r"""Kernel-vs-Green's and recovery numbers of a predictor on unseen systems."""

import numpy as np
from scipy.linalg import eigh

from .classical import EXACT_LEVEL, NOISE_PENALTY, NOISY_TEST_MODES, classical_recovery
from .greens import PDES, greens_operator, resolve_pde
from .recovery import as_float64, recover_field

NOISE_LEVELS = (0.0, 0.01, 0.1)
"""Relative response noise of the classical baseline in :func:`kernel_metrics`."""

N_HELD_OUT = 10
"""Pairs outside the context on which a kernel's misfit is measured (:func:`evaluate_system`)."""

ARRAYS = ("kernel", "greens", "true", "recovered", "classical")
"""The keys of :func:`evaluate_system`'s report that hold arrays rather than numbers."""


def phase_accuracy(recovered, true, threshold=None):
    """Fraction of nodes whose phase (above/below a threshold) the recovered field gets right.

    Parameters
    ----------
    recovered, true : array-like
        Fields of the same shape (pass the interior nodes to score those only).
    threshold : float, optional
        Default: the midpoint of the two phase values, ``(min + max) / 2`` of ``true``.

    Returns
    -------
    float
    """
    recovered, true = as_float64("recovered", recovered), as_float64("true", true)
    if recovered.shape != true.shape:
        raise ValueError(f"recovered {recovered.shape} and true {true.shape} differ in shape")
    t = (true.min() + true.max()) / 2 if threshold is None else threshold
    return float(np.mean((recovered > t) == (true > t)))


def input_principal_basis(tasks, energy=0.99):
    r"""Orthonormal top principal directions of the input law, from the training inputs.

    The directions are the leading eigenvectors of the *uncentred* second
    moment :math:`\sum f f^\top` of the loads (the operators are linear, not
    affine, so the mean direction counts), of the ``"train"`` systems (all
    systems when there are none), keeping the fewest that carry ``energy`` of
    the total.

    Parameters
    ----------
    tasks : TaskSet
    energy : float, default 0.99

    Returns
    -------
    np.ndarray
        ``[N*c_f, r]`` float64, orthonormal columns.
    """
    systems = tasks.indices("train")
    systems = systems if len(systems) else np.arange(tasks.n_systems)
    moment = np.zeros((tasks.f[0, 0].size,) * 2)
    for s in systems:  # one system at a time: never copies the training set
        F = tasks.f[s].reshape(tasks.n_pairs, -1).astype(np.float64)
        moment += F.T @ F
    w, V = eigh(moment)
    w, V = w[::-1], V[:, ::-1]
    r = int(np.searchsorted(np.cumsum(w) / w.sum(), energy) + 1)
    return V[:, :r]


def draw_context(tasks, system, n_pairs, seed=0, n_held_out=0):
    """``n_pairs`` distinct pairs of one system (a random order of its pairs, drawn with the
    stream ``(seed, 2, system)``), and the next ``n_held_out`` pairs of that order.

    Returns
    -------
    f_ctx, u_ctx : np.ndarray
        ``[n_pairs, c, *grid]`` float32 (physical units).
    f_held, u_held : np.ndarray
        ``[min(n_held_out, P - n_pairs), c, *grid]``: pairs outside the context.
    """
    if not 1 <= n_pairs <= tasks.n_pairs:
        raise ValueError(f"n_pairs must be in [1, {tasks.n_pairs}], got {n_pairs}")
    order = np.random.default_rng([seed, 2, int(system)]).permutation(tasks.n_pairs)
    context, held = order[:n_pairs], order[n_pairs:n_pairs + n_held_out]
    return tasks.f[system, context], tasks.u[system, context], tasks.f[system, held], tasks.u[system, held]


def _relative(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def log_correlation(recovered, true):
    """Pearson correlation of ``log(recovered)`` and ``log(true)`` (positive fields).

    Where a field is recovered at all, this says whether its high and low
    regions are in the right places, whatever its overall scale. Recovered
    values below ``1e-3`` of the true maximum (non-physical, non-positive
    estimates) are clipped there.
    """
    recovered, true = np.asarray(recovered, np.float64).ravel(), np.asarray(true, np.float64).ravel()
    floor = 1e-3 * true.max()
    return float(np.corrcoef(np.log(np.maximum(recovered, floor)), np.log(true))[0, 1])


def evaluate_system(predictor, tasks, system, seed=0, basis=None, noise_levels=NOISE_LEVELS, method="probe"):
    """Kernel and recovery errors of one system, with the arrays behind them.

    Parameters
    ----------
    predictor : InContextPredictor
    tasks : TaskSet
        Darcy or elasticity systems with their hidden field in ``params``.
    system : int
        Index in ``tasks``.
    seed : int
        Seed of the context draw (:func:`draw_context`) and of the noise.
    basis : np.ndarray, optional
        ``[N*c_f, r]`` input principal directions; default
        :func:`input_principal_basis` of ``tasks``.
    noise_levels : sequence of float
        Noise levels the classical baseline adds to the context (regularised for
        them plus the data's own ``attrs["noise_level"]``, if any).
    method : str
        Of :func:`recover_permeability` / :func:`recover_modulus`.

    Returns
    -------
    dict
        Numbers (as :func:`kernel_metrics`, for this system) and ``kernel``
        (physical ``M``), ``greens`` (``G``), ``true``, ``recovered``,
        ``classical`` (``{noise: field}``), all numpy.
    """
    pde, nu = resolve_pde(tasks)
    true = tasks.params[PDES[pde]][system].astype(np.float64)
    f, u, f_held, u_held = draw_context(tasks, system, predictor.n_pairs, seed, N_HELD_OUT)
    M = np.asarray(predictor.kernel(f, u), dtype=np.float64)
    G = greens_operator(pde, true, nu)
    basis = input_principal_basis(tasks) if basis is None else basis

    def misfit(f, u):  # how inexact the kernel is on these pairs, known without the truth
        return _relative(f.reshape(len(f), -1) @ M.T, u.reshape(len(u), -1).astype(np.float64))

    # models that reproduce their context exactly are only inexact beyond it: the misfit on
    # pairs outside the context sets the roughness penalty (the context's when there are none)
    held_out = misfit(f_held, u_held) if len(f_held) else None
    data_noise = tasks.attrs.get("noise_level", 0.0)  # what add_response_noise put in the data
    # a kernel learned from noisy data is regularised like the classical fit of such data:
    # weak form, penalty ten times its misfit
    noisy = data_noise > EXACT_LEVEL
    smoothing = 1e-6 + (NOISE_PENALTY if noisy else 1) * (misfit(f, u) if held_out is None else held_out)
    recovered = recover_field(M, true.shape, pde, nu, method, 1e-6, smoothing, NOISY_TEST_MODES if noisy else 0)
    classical = {s: classical_recovery(f, u, pde, s, seed, nu, data_noise=data_noise) for s in noise_levels}
    inner = (slice(1, -1),) * 2
    out = {"system": int(system), "context_misfit": misfit(f, u), "held_out_misfit": held_out,
           "kernel_rel_err": _relative(M, G),
           "kernel_rel_err_span": _relative(M @ basis, G @ basis),
           "recovery_rel_err": _relative(recovered[inner], true[inner]),
           "log_correlation": log_correlation(recovered[inner], true[inner]),
           "classical_rel_err": {s: _relative(c[inner], true[inner]) for s, c in classical.items()}}
    if len(np.unique(true)) == 2:
        out["phase_accuracy"] = phase_accuracy(recovered[inner], true[inner])
        out["classical_phase_accuracy"] = {s: phase_accuracy(c[inner], true[inner]) for s, c in classical.items()}
    return {**out, "kernel": M, "greens": G, "true": true, "recovered": recovered, "classical": classical}


def kernel_metrics(predictor, tasks, systems, n_pairs, seed=0, noise_levels=NOISE_LEVELS,
                   span_energy=0.99, method="probe"):
    r"""Kernel-vs-Green's and inverse-recovery errors of an in-context model on unseen systems.

    For each system, a context of ``n_pairs`` pairs (:func:`draw_context`)
    gives the model's kernel :math:`M` in physical units, compared with the
    exact :math:`G` (:func:`~nips_plugin.interpret.greens.greens_operator`):

    * ``kernel_rel_err`` :math:`= \|M - G\|_F / \|G\|_F`;
    * ``kernel_rel_err_span`` :math:`= \|(M - G)V\|_F / \|GV\|_F`, with
      :math:`V` the top principal directions of the training inputs carrying
      ``span_energy`` of their (uncentred) energy (:func:`input_principal_basis`):
      the error on the inputs the model was trained on, which is all the data
      constrain (design notes §6);
    * ``context_misfit`` :math:`= \|M F - U\|_F / \|U\|_F` on the context
      itself and ``held_out_misfit``, the same on :data:`N_HELD_OUT` other pairs
      of the system (no ground truth needed);
    * ``recovery_rel_err``: relative L2 error, on the interior nodes, of the
      hidden field recovered from :math:`M` (:func:`recover_permeability` /
      :func:`recover_modulus`, with ``smoothing = 1e-6 + held_out_misfit``: the
      less exact the kernel, the stronger the penalty; for data carrying noise,
      ``tasks.attrs["noise_level"]`` above :data:`~.classical.EXACT_LEVEL`, as
      :func:`classical_recovery` regularises: six test modes per axis and ten times
      that misfit);
    * ``log_correlation``: correlation of the recovered and true log-fields on
      the interior nodes (:func:`log_correlation`);
    * ``classical_rel_err``: the same for :func:`classical_recovery` from the
      same pairs, ``{noise: error}`` per noise level added to them (regularised
      for that level and the noise the data carry, ``tasks.attrs["noise_level"]``);
    * ``phase_accuracy`` / ``classical_phase_accuracy``: only for two-phase
      systems (hidden field with exactly two values), averaged over those.

    Parameters
    ----------
    predictor : InContextPredictor or LeastSquaresPredictor
        A trained NIPS / NAO / LinearNAO with its data processor, or the
        no-learning least-squares baseline.
    tasks : TaskSet
        ``attrs["pde"]`` is ``"darcy"`` or ``"elasticity"``; hidden fields in ``params``.
    systems : sequence of int
        Indices of the systems to evaluate (e.g. ``tasks.indices("test")``).
    n_pairs : int
        Context size ``d`` (the model's).
    seed : int, default 0
    noise_levels : sequence of float, default (0, 0.01, 0.1)
    span_energy : float, default 0.99
    method : {"equation", "inverse"}, default "equation"

    Returns
    -------
    dict
        The means over ``systems`` of the numbers above, ``span_rank`` (the
        number of principal directions), ``n_systems`` and ``per_system``
        (one dict of numbers per system).
    """
    if n_pairs != predictor.n_pairs:
        raise ValueError(f"the model reads contexts of {predictor.n_pairs} pairs, got n_pairs={n_pairs}")
    if len(systems) == 0:
        raise ValueError("no systems to evaluate")
    basis = input_principal_basis(tasks, span_energy)
    per = []
    for s in systems:
        report = evaluate_system(predictor, tasks, s, seed, basis, noise_levels, method)
        per.append({k: v for k, v in report.items() if k not in ARRAYS})
    out = {"n_systems": len(per), "span_rank": basis.shape[1]}
    for key in ("context_misfit", "held_out_misfit", "kernel_rel_err", "kernel_rel_err_span",
                "recovery_rel_err", "log_correlation", "phase_accuracy"):
        values = [p[key] for p in per if p.get(key) is not None]
        if values:
            out[key] = float(np.mean(values))
    for key in ("classical_rel_err", "classical_phase_accuracy"):
        values = [p[key] for p in per if key in p]
        if values:
            out[key] = {s: float(np.mean([v[s] for v in values])) for s in noise_levels}
    return {**out, "per_system": per}
