r"""The generated benchmark families: many systems of one PDE, many input/response pairs each.

Each family draws ``S = n_train + n_test + n_ood`` systems (hidden coefficient
fields), in that order with ``split`` ``"train"``, ``"test"`` (unseen systems
of the training law) and ``"ood"`` (systems of another law), and for each
system ``n_pairs`` random loadings (:func:`~nips_plugin.data.fields.random_load`,
smooth fields plus a random uniform part) with their responses from the
verified solvers.

Everything random is a continuous field seeded by ``(seed, stream, index)``
and independent of the grid size, so one ``seed`` gives the same systems and
loadings at every ``n``: the ``n = 21`` data sample the ``n = 41`` fields at
every other node (the responses differ by the discretisation error only).

Generated sets are cached as task files (:func:`~nips_plugin.data.tasks.save_tasks`)
in ``cache_dir``, default ``$NIPS_PLUGIN_CACHE`` or the user cache directory
(``platformdirs.user_cache_dir("nips-plugin")``), under
``<name>-<hash>.h5`` with a hash of every generator parameter (including the
laws below and :data:`GENERATOR_VERSION`).
"""

import hashlib
import json
import os
import tempfile
from functools import partial
from pathlib import Path

import numpy as np
import platformdirs
from sklearn.datasets import load_digits
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from .fields import digit_modulus, gaussian_random_field, lognormal_field, random_load, two_phase_field
from .solvers import solve_darcy, solve_elasticity
from .tasks import load_tasks, save_tasks

GENERATOR_VERSION = 1
"""Bumped whenever the same parameters would generate different data (invalidates caches)."""

PERMEABILITY_LAWS = {
    # like the classic FNO Darcy law (whose length is ~0.47 here): sign of a rough GRF
    # (Matérn nu = 1, spectrum ~(|ω|² + τ²)^-2), values 12 / 3
    "two_phase": {"length_scale": 0.25, "smoothness": 1.0, "high": 12.0, "low": 3.0},
    # continuous, finer-grained, smoother: median sqrt(12 * 3) = 6, factor 2 per standard deviation
    "lognormal": {"length_scale": 0.15, "smoothness": 1.5, "median": 6.0, "sigma": float(np.log(2.0))},
}
"""Darcy permeability laws: parameters of the Gaussian field and of its map to ``b``."""

LOAD = {"length_scale": 0.15, "smoothness": 2.0, "offset_std": 0.5}
"""Loading law of both families (:func:`~nips_plugin.data.fields.random_load`).

The uniform part (standard deviation 0.5 against the unit-variance smooth
field) carries about half of the responses' energy in both families (the
solution operators amplify the smoothest inputs most); at 1.0 it would carry
about 80% and the responses would be dominated by one direction per component.
"""

N_MODES = 32
"""Frequencies per axis of every Gaussian field (the grid-independent truncation)."""

DIGIT_PAD = 2
"""Blank pixels around each digit image (:func:`~nips_plugin.data.fields.digit_modulus`)."""

# independent random streams of a family, combined with the user's seed
_SYSTEMS, _OOD_SYSTEMS, _LOADS = 0, 1, 2


def permeability(law, n, n_samples, seed):
    """Permeability fields of a law of :data:`PERMEABILITY_LAWS`.

    Parameters
    ----------
    law : str
        ``"two_phase"`` (``high`` where a Gaussian field is ``>= 0``, ``low``
        elsewhere) or ``"lognormal"`` (``median * exp(sigma * g)``).
    n : int
        Nodes per side.
    n_samples : int
        Number of fields.
    seed : int, sequence of int or np.random.Generator
        As for :func:`~nips_plugin.data.fields.gaussian_random_field`.

    Returns
    -------
    np.ndarray
        ``[n_samples, n, n]`` float64, positive.
    """
    p = _law(law)
    g = gaussian_random_field(n, n_samples, seed, p["length_scale"], p["smoothness"], N_MODES)
    if law == "two_phase":
        return two_phase_field(g, p["high"], p["low"])
    return lognormal_field(g, p["median"], p["sigma"])


def _law(name):
    """The parameters of a permeability law, or ``ValueError`` naming the known ones."""
    if name not in PERMEABILITY_LAWS:
        raise ValueError(f"unknown permeability law {name!r}; choose from {sorted(PERMEABILITY_LAWS)}")
    return PERMEABILITY_LAWS[name]


def _cache_dir(cache_dir):
    """``cache_dir``, else ``$NIPS_PLUGIN_CACHE``, else the user cache directory."""
    default = os.environ.get("NIPS_PLUGIN_CACHE") or platformdirs.user_cache_dir("nips-plugin")
    return Path(cache_dir or default)


def _cached(name, attrs, cache_dir, generate):
    """Load the task file keyed by ``(name, attrs)``, generating and writing it first if absent.

    ``generate()`` returns ``(f, u, params, split)``. The file is written to a
    temporary name and renamed, so a reader never sees a partial file.
    Returns :func:`load_tasks` of the file, so a fresh and a cached set are
    identical.
    """
    key = hashlib.sha256(json.dumps([name, attrs], sort_keys=True).encode()).hexdigest()[:16]
    directory = _cache_dir(cache_dir)
    path = directory / f"{name}-{key}.h5"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        f, u, params, split = generate()
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.stem}-", suffix=".tmp")
        os.close(fd)
        try:
            save_tasks(tmp, f, u, params, split, **attrs)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return load_tasks(path)


def _check_sizes(n, n_pairs, n_train, n_test, n_ood, seed):
    """``ValueError`` unless the grid, counts and seed describe a non-empty family."""
    counts = {"n_pairs": n_pairs, "n_train": n_train, "n_test": n_test, "n_ood": n_ood, "seed": seed}
    bad = {k: v for k, v in counts.items() if not isinstance(v, (int, np.integer)) or v < 0}
    if bad or n_pairs < 1 or n_train + n_test + n_ood < 1:
        raise ValueError(
            f"need non-negative integers with n_pairs >= 1 and at least one system, got {counts}"
        )
    if not isinstance(n, (int, np.integer)) or n < 3:
        raise ValueError(f"the grid needs n >= 3 nodes per side, got {n}")


def _split(n_train, n_test, n_ood):
    """``[S]`` split strings: train systems, then test, then OOD."""
    return np.array(["train"] * n_train + ["test"] * n_test + ["ood"] * n_ood)


def _pairs(solve, coefficient, n_in, seed, n_pairs, n_components, desc, progress):
    """Loadings ``[S, P, c, n, n]`` and responses of every system ``coefficient[s]``, float32.

    The first ``n_in`` systems are of the training law, the others OOD; a
    system's loadings are seeded by its law and its index within that law,
    so changing one split's size leaves the other systems' data unchanged.
    """
    S, n = len(coefficient), coefficient.shape[-1]
    shape = (S, n_pairs, n_components, n, n)
    f, u = np.empty(shape, np.float32), np.empty(shape, np.float32)
    # the small dense blocks of these solves run several times faster on one BLAS thread
    with threadpool_limits(limits=1, user_api="blas"):
        for s in tqdm(range(S), desc=desc, unit="system", disable=not progress):
            stream = (_SYSTEMS, s) if s < n_in else (_OOD_SYSTEMS, s - n_in)
            f[s] = random_load(n, n_pairs, (seed, _LOADS, *stream), n_components, n_modes=N_MODES, **LOAD)
            # solve for the stored (float32) loading, so u answers f exactly up to the solve
            u[s] = solve(coefficient[s], f[s].astype(np.float64))
    return f, u


def _attrs(pde, generator, **params):
    """The file attributes: PDE, domain, generator and every parameter that shapes the data."""
    params = {k: v.item() if isinstance(v, np.generic) else v for k, v in params.items()}
    return {"pde": pde, "domain": "[0,1]^2", "generator": generator, "version": GENERATOR_VERSION,
            "n_modes": N_MODES, **{f"load_{k}": v for k, v in LOAD.items()}, **params}


def make_darcy_tasks(n=21, n_pairs=100, n_train=90, n_test=10, n_ood=10, seed=0, law="two_phase",
                     ood="lognormal", cache_dir=None, progress=True):
    r"""Darcy flow systems :math:`-\nabla\cdot(b_s\nabla u) = f`, :math:`u = 0` on :math:`\partial[0,1]^2`.

    Training and test permeabilities follow ``law``, the out-of-distribution
    ones ``ood`` (:data:`PERMEABILITY_LAWS`). By default: two-phase 12/3 from
    the sign of a Gaussian field (length 0.25, like the classic FNO Darcy data)
    in distribution, and a continuous log-normal field with a shorter length
    (0.15, median 6, a factor 2 per standard deviation) out of distribution.
    Loadings: :data:`LOAD` (smooth Gaussian field, length 0.15, plus a
    uniform part of standard deviation 0.5). Responses:
    :func:`~nips_plugin.data.solvers.solve_darcy`.

    Parameters
    ----------
    n : int, default 21
        Nodes per side (boundary included).
    n_pairs : int, default 100
        Input/response pairs per system.
    n_train, n_test, n_ood : int, default 90, 10, 10
        Systems of each split, stored in that order. Growing a count keeps
        the systems already drawn.
    seed : int, default 0
        Non-negative; with the other parameters (except ``n``) it fixes the
        continuous systems and loadings.
    law, ood : str, default "two_phase", "lognormal"
        Permeability laws of the train/test and the OOD systems.
    cache_dir : str or os.PathLike, optional
        Where the task file is cached (module docstring).
    progress : bool, default True
        Show a progress bar over the systems.

    Returns
    -------
    TaskSet
        ``f``, ``u``: ``[S, n_pairs, 1, n, n]`` float32;
        ``params["permeability"]``: ``[S, n, n]``; ``split``; ``attrs``: ``pde="darcy"``,
        ``domain="[0,1]^2"`` and every generator parameter.
    """
    _check_sizes(n, n_pairs, n_train, n_test, n_ood, seed)
    laws = {f"{role}_{k}": v for role, name in (("law", law), ("ood", ood)) for k, v in _law(name).items()}
    attrs = _attrs("darcy", "make_darcy_tasks", n=n, n_pairs=n_pairs, n_train=n_train, n_test=n_test,
                   n_ood=n_ood, seed=seed, law=law, ood=ood, **laws)

    def generate():
        b = np.concatenate([permeability(law, n, n_train + n_test, (seed, _SYSTEMS)),
                            permeability(ood, n, n_ood, (seed, _OOD_SYSTEMS))])
        f, u = _pairs(solve_darcy, b, n_train + n_test, seed, n_pairs, 1, "darcy", progress)
        return f, u, {"permeability": b}, _split(n_train, n_test, n_ood)

    return _cached("darcy", attrs, cache_dir, generate)


def make_elasticity_tasks(n=29, n_pairs=100, n_train=90, n_test=10, n_ood=10, seed=0, ood_digit=9,
                          nu=0.3, stiff=1.0, soft=0.1, cache_dir=None, progress=True):
    r"""Plane-strain elasticity of digit-shaped microstructures, clamped on :math:`\partial[0,1]^2`.

    Each system's Young's modulus is a handwritten digit (scikit-learn's
    bundled 8x8 ``load_digits`` images) resampled by
    :func:`~nips_plugin.data.fields.digit_modulus`: ``stiff`` ink in a ``soft``
    matrix. Train and test systems are distinct images of the digits other
    than ``ood_digit`` (test: unseen images of seen digits); OOD systems are
    images of ``ood_digit``. Inputs are body forces with two components
    (:data:`LOAD` per component); responses are the displacements from
    :func:`~nips_plugin.data.solvers.solve_elasticity` (``c_f = c_u = 2``,
    component 0 along ``x`` = grid axis 0).

    Parameters
    ----------
    n : int, default 29
        Nodes per side (boundary included).
    n_pairs : int, default 100
        Input/response pairs per system.
    n_train, n_test, n_ood : int, default 90, 10, 10
        Systems of each split, stored in that order (at most about 1,600
        seen-digit and 180 held-out images exist).
    seed : int, default 0
        Non-negative; picks the images and seeds the loadings.
    ood_digit : int, default 9
        The held-out digit class, 0-9.
    nu : float, default 0.3
        Poisson ratio.
    stiff, soft : float, default 1.0, 0.1
        Modulus of ink and matrix (arbitrary units, contrast 10).
    cache_dir : str or os.PathLike, optional
        Where the task file is cached (module docstring).
    progress : bool, default True
        Show a progress bar over the systems.

    Returns
    -------
    TaskSet
        ``f``, ``u``: ``[S, n_pairs, 2, n, n]`` float32; ``params["modulus"]``:
        ``[S, n, n]``; ``split``; ``attrs``: ``pde="elasticity"``,
        ``domain="[0,1]^2"`` and every generator parameter.
    """
    _check_sizes(n, n_pairs, n_train, n_test, n_ood, seed)
    if ood_digit not in range(10):
        raise ValueError(f"ood_digit must be a digit 0-9, got {ood_digit}")
    attrs = _attrs("elasticity", "make_elasticity_tasks", n=n, n_pairs=n_pairs, n_train=n_train,
                   n_test=n_test, n_ood=n_ood, seed=seed, ood_digit=int(ood_digit), nu=float(nu),
                   stiff=float(stiff), soft=float(soft), pad=DIGIT_PAD)

    def generate():
        digits = load_digits()
        rng = np.random.default_rng((seed, _SYSTEMS))
        seen = rng.permutation(np.flatnonzero(digits.target != ood_digit))
        held = rng.permutation(np.flatnonzero(digits.target == ood_digit))
        if n_train + n_test > len(seen) or n_ood > len(held):
            raise ValueError(
                f"asked for {n_train + n_test} train/test and {n_ood} OOD images, but only "
                f"{len(seen)} images of other digits and {len(held)} of digit {ood_digit} exist"
            )
        chosen = np.concatenate([seen[:n_train + n_test], held[:n_ood]])
        E = digit_modulus(digits.images[chosen] / 16.0, n, stiff, soft, DIGIT_PAD)
        f, u = _pairs(partial(solve_elasticity, nu=nu), E, n_train + n_test, seed, n_pairs, 2,
                      "elasticity", progress)
        return f, u, {"modulus": E}, _split(n_train, n_test, n_ood)

    return _cached("elasticity", attrs, cache_dir, generate)
