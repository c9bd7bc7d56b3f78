"""The models compared by the benchmark, with their documented default settings.

Every model is built through neuraloperator's ``get_model`` from a config whose
``model`` section names ``model_arch`` and ``data_channels``; FNO and TFNO see the
same packed in-context channels as NIPS/NAO (``in_channels = (d+q) c_f + d c_u``).
``fno_oracle`` is FNO given the hidden parameter field and the query input
instead of a context: the reference for what knowing the physics buys.

The defaults live in :mod:`nips_plugin.training.configs` (one config class
per model): parameter budgets of the same order on the benchmark presets (tens
of thousands) and an optimiser setting per model.
"""

from neuralop.models.base_model import get_model
from zencfg.bunch import Bunch

import nips_plugin  # noqa: F401  (registers nips / nao / linear_nao)
from .configs import OPTIMIZER_DEFAULTS, model_config_class

#: models the benchmark can compare; ``fno_oracle`` is FNO fed the hidden field
MODELS = ("nips", "nao", "linear_nao", "fno", "tfno", "fno_oracle")

IN_CONTEXT_MODELS = ("nips", "nao", "linear_nao")


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
        The training data, to resolve NIPS's ``context_fit="auto"``
        (:func:`resolve_context_fit`).
    **overrides
        Constructor arguments replacing the defaults.

    Returns
    -------
    zencfg.bunch.Bunch
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {list(MODELS)}")
    defaults = model_config_class("fno" if name == "fno_oracle" else name)().to_dict()
    defaults.pop("_config_name")  # zencfg bookkeeping, not a constructor argument
    arch = defaults.pop("model_arch")
    kwargs = {**defaults, **overrides}
    if "context_fit" in kwargs:
        kwargs["context_fit"] = resolve_context_fit(kwargs["context_fit"], tasks)
    if "n_modes" in kwargs and isinstance(kwargs["n_modes"], int):
        kwargs["n_modes"] = (kwargs["n_modes"],) * n_dim
    if name in IN_CONTEXT_MODELS:
        kwargs.update(n_pairs=layout.n_pairs, in_components=layout.in_components,
                      out_components=layout.out_components)
        if name != "nips":
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
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {list(MODELS)}")
    return dict(OPTIMIZER_DEFAULTS["fno" if name == "fno_oracle" else name])
