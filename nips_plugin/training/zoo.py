"""The models compared by the benchmark, with their documented default settings.

Every model is built through neuraloperator's ``get_model`` from a config whose
``model`` section names ``model_arch`` and ``data_channels``; FNO and TFNO see the
same packed in-context channels as NIPS/NAO (``in_channels = (d+q) c_f + d c_u``).

Rows and what they are:

* ``nips``, ``nao``, ``linear_nao``: the papers' models (the classes' defaults:
  ``u = K f``, NAO's MLP ``W^P`` and quadratic attention), at the budget's depth;
* ``<model>_enhanced``: the same architecture with this package's neural additions
  (:data:`ENHANCEMENTS`: the context's exact least-squares part, a coordinate-field
  input affine, a learned shared sine-series operator; for NAO/LinearNAO also the cosine
  ``W^P`` and the linear attention order);
* ``<model>_hybrid``: the enhanced model trained as a correction of a classical prior
  fitted to each context (:class:`~nips_plugin.baselines.PriorResidualProcessor`; the
  prior is chosen from the training data, :func:`resolve_prior`);
* ``fno``, ``tfno``: neuraloperator's models on the packed channels; ``fno_oracle``: FNO given
  the hidden parameter field and the query input instead of a context, the reference for
  what knowing the physics buys.

The defaults live in :mod:`nips_plugin.training.configs` (one config class
per model): parameter budgets of the same order on the benchmark presets (tens
of thousands) and an optimiser setting per model.
"""

import numpy as np
from neuralop.models.base_model import get_model
from zencfg.bunch import Bunch

import nips_plugin  # noqa: F401  (registers nips / nao / linear_nao)
from ..baselines import LeastSquaresPredictor, grid_modes
from .configs import OPTIMIZER_DEFAULTS, model_config_class

#: this package's neural additions to each in-context architecture (``*_enhanced`` rows)
ENHANCEMENTS = {
    "nips": {"input_norm": "coordinate", "context_fit": "auto", "shared_operator_modes": 12},
    "nao": {"input_norm": "coordinate", "input_modes": 12, "context_fit": "auto", "shared_operator_modes": 12,
            "output_map": "cosine", "output_map_modes": 8, "attention_order": "linear"},
}
ENHANCEMENTS["linear_nao"] = ENHANCEMENTS["nao"]

#: benchmark rows that are another configuration of a model: name -> (model, options, prior);
#: ``prior="auto"``: a classical prior chosen from the training data (:func:`resolve_prior`)
VARIANTS = {}
for _model, _options in ENHANCEMENTS.items():
    VARIANTS[f"{_model}_enhanced"] = (_model, _options, None)
    VARIANTS[f"{_model}_hybrid"] = (_model, _options, "auto")
VARIANTS["fno_oracle"] = ("fno", {}, None)

IN_CONTEXT_MODELS = ("nips", "nao", "linear_nao", *(v for v, (m, *_) in VARIANTS.items() if m != "fno"))

#: models the benchmark can compare; ``fno_oracle`` is FNO fed the hidden field
MODELS = ("nips", "nao", "linear_nao", "fno", "tfno", *VARIANTS)


def base_model(name):
    """The zoo model a benchmark row ``name`` is a configuration of (``nips_hybrid`` -> ``nips``)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {list(MODELS)}")
    return VARIANTS.get(name, (name,))[0]


#: ``response_asymmetry`` of the training data below which NIPS's ``context_fit="auto"``
#: assumes a symmetric operator (Darcy data: 4e-9; the elasticity preset's consistent
#: mass matrix: 4e-3)
SYMMETRY_TOLERANCE = 0.02


def resolve_context_fit(value, tasks=None):
    """``"auto"``: ``"symmetric"`` when the tasks' operators are measured symmetric
    (:meth:`~nips_plugin.data.tasks.TaskSet.response_asymmetry` below
    :data:`SYMMETRY_TOLERANCE`), else (or without tasks) ``"least_squares"``, which any
    linear operator allows; other values unchanged."""
    if value != "auto":
        return value
    symmetric = tasks is not None and tasks.response_asymmetry() < SYMMETRY_TOLERANCE
    return "symmetric" if symmetric else "least_squares"


#: training systems whose contexts decide ``local_operator="auto"`` (:func:`resolve_local_operator`)
LOCAL_OPERATOR_PROBES = 4


def row_prior(name):
    """The classical prior of row ``name`` (``"auto"`` or None)."""
    return VARIANTS.get(name, (None, None, None))[2]


def resolve_prior(value, tasks=None, n_pairs=None):
    """``"auto"``: the local operator :func:`resolve_local_operator` chooses, else ``"laplace"``
    (the context-scaled inverse Laplacian, :class:`~nips_plugin.baselines.ClassicalPrior`);
    other values unchanged."""
    if value != "auto":
        return value
    return resolve_local_operator("auto", tasks, n_pairs) or "laplace"


def resolve_local_operator(value, tasks=None, n_pairs=None):
    """``"auto"``: the local operator (:mod:`nips_plugin.baselines.local_operator`) that predicts
    held-out pairs of the training data best, if it does so better than the enhanced models'
    starting point without it.

    On the first ``n_pairs`` pairs of each of :data:`LOCAL_OPERATOR_PROBES` training systems,
    :func:`~nips_plugin.baselines.local_operator.select_local_operator` cross-validates every
    candidate; the baseline is ``lstsq_laplace`` (the context's fit plus the context-scaled
    inverse Laplacian) on the same folds. The most frequent choice wins when the local
    operators' median error is below the baseline's, otherwise None (no local operator):
    noisy responses, non-local operators, responses not zero on the boundary, grids other
    than node grids of a box. Where no equation-error fit wins, the star refined by its
    output error (``"star/output"``, for noisy responses; single-component data) is tried the same way: about a
    second per 21x21 context, so a model using it trains on a pool of contexts
    (:data:`~nips_plugin.training.run.OUTPUT_ERROR_POOL`). Other values
    unchanged; None without tasks or ``n_pairs``.
    """
    if value != "auto":
        return value
    if tasks is None or n_pairs is None or tasks.f.shape[2] != tasks.u.shape[2]:
        return None
    from ..baselines.local_operator import (LOCAL_OPERATORS, OUTPUT_ERROR_OPERATORS, context_cv_error,
                                            select_local_operator)
    systems = tasks.indices("train")
    systems = (systems if len(systems) else np.arange(tasks.n_systems))[:LOCAL_OPERATOR_PROBES]
    mode = resolve_context_fit("auto", tasks)
    c, n_dim = tasks.f.shape[2], len(tasks.grid_shape)
    contexts = [tuple(np.asarray(a[s, :n_pairs], np.float64) for a in (tasks.f, tasks.u)) for s in systems]

    def laplace(f, u, q):
        return LeastSquaresPredictor(len(f), c, c, n_dim, mode, shared_operator_modes=12).predict(f, u, q)
    base = None
    # the output-error fit for single-component data only: on 29x29 two-component elasticity
    # (3% noise) the star lost to the baseline after 36 min of fits
    for candidates in (LOCAL_OPERATORS, OUTPUT_ERROR_OPERATORS[:1] if c == 1 else ()):
        fits = [select_local_operator(f, u, candidates=candidates) for f, u in contexts]
        if any(fit is None for fit, _ in fits):
            continue
        base = np.median([context_cv_error(f, u, laplace) for f, u in contexts]) if base is None else base
        if np.median([e for _, e in fits]) < base:
            choices = [fit.operator for fit, _ in fits]
            return max(set(choices), key=choices.count)
    return None


#: the in-context models' mode options, and how many nodes of an axis its functions cannot
#: tell apart (Fourier modes and cosines: ``n`` per ``n``-node axis; sines, which vanish on
#: the boundary: ``n - 2``)
GRID_MODES = {"n_modes": 0, "input_modes": 0, "output_map_modes": 0, "shared_operator_modes": 2}


def model_config(name, layout, n_dim, n_hidden=0, tasks=None, **overrides):
    """The ``model`` config section of ``name`` for a data layout.

    Parameters
    ----------
    name : str
        One of :data:`MODELS`.
    layout : nips_plugin.layers.context.ContextLayout
        Channels of the data (``d``, ``c_f``, ``c_u``, ``q``).
    n_dim : int
        Grid dimension.
    n_hidden : int
        Hidden-field channels (only ``fno_oracle``).
    tasks : TaskSet, optional
        The training data, to resolve ``context_fit="auto"`` (:func:`resolve_context_fit`).
    **overrides
        Constructor arguments replacing the defaults.

    Returns
    -------
    zencfg.bunch.Bunch
    """
    base, options, _ = VARIANTS.get(name, (base_model(name), {}, None))
    defaults = model_config_class(base)().to_dict()
    defaults.pop("_config_name")  # zencfg bookkeeping, not a constructor argument
    arch = defaults.pop("model_arch")
    kwargs = {**defaults, **options, **overrides}
    if kwargs.get("input_norm") == "token_affine":
        if tasks is None:
            raise ValueError(f"{name}: input_norm='token_affine' needs the tasks (their grid)")
        kwargs["grid_shape"] = tuple(tasks.grid_shape)
    if "context_fit" in kwargs:
        kwargs["context_fit"] = resolve_context_fit(kwargs["context_fit"], tasks)
    if name in IN_CONTEXT_MODELS and tasks is not None:
        for key, offset in GRID_MODES.items():
            if isinstance(kwargs.get(key), int):
                kwargs[key] = grid_modes(kwargs[key], tasks.grid_shape, offset)
    if "n_modes" in kwargs and isinstance(kwargs["n_modes"], int):
        kwargs["n_modes"] = (kwargs["n_modes"],) * n_dim
    if name in IN_CONTEXT_MODELS:
        kwargs.update(n_pairs=layout.n_pairs, in_components=layout.in_components,
                      out_components=layout.out_components)
        if base != "nips":
            kwargs["n_dim"] = n_dim
        channels = layout.in_channels
    elif name == "fno_oracle":
        channels = n_hidden + layout.n_queries * layout.in_components
    else:
        channels = layout.in_channels
    return Bunch({"model_arch": arch, "data_channels": channels,
                  "out_channels": layout.out_channels, **kwargs})


def build_model(name, layout, n_dim, n_hidden=0, tasks=None, **overrides):
    """Build model ``name`` for a data layout with ``neuralop.get_model`` (see :func:`model_config`)."""
    return get_model(Bunch({"model": model_config(name, layout, n_dim, n_hidden, tasks, **overrides)}))


def optimizer_defaults(name):
    """Learning rate and weight decay of model ``name``."""
    return dict(OPTIMIZER_DEFAULTS[base_model(name)])
