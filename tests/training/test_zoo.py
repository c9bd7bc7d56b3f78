"""The zoo's rows: the papers' models, their enhanced and hybrid configurations."""
import inspect

import numpy as np
import pytest
import torch

from nips_plugin import pack_context
from nips_plugin.layers.context import ContextLayout
from neuralop.models.base_model import BaseModel

from nips_plugin.training.zoo import (ENHANCEMENTS, IN_CONTEXT_MODELS, MODELS, base_model, build_model,
                                      model_config, resolve_prior, row_prior)


class _Tasks:
    """What model_config reads of a TaskSet: the grid, the measured symmetry and pairs (all
    zero: no local operator fits them)."""
    grid_shape = (7, 7)
    n_systems = 1
    f = u = np.zeros((1, 5, 1, 7, 7))
    response_asymmetry = staticmethod(lambda: 0.0)
    indices = staticmethod(lambda split: np.arange(1))


@pytest.mark.parametrize("name", ["nips", "nao", "linear_nao"])
def test_model_rows_are_the_papers_models(name):
    """``nips`` / ``nao`` / ``linear_nao`` are the classes' defaults (the papers' models) at the
    budget's depth and width; ``*_enhanced`` adds exactly :data:`ENHANCEMENTS`; ``*_hybrid`` is
    the enhanced model with a classical prior, the only rows with one."""
    cls = BaseModel._models[name]
    defaults = {k: v.default for k, v in inspect.signature(cls.__init__).parameters.items()
                if v.default is not inspect.Parameter.empty}
    layout = ContextLayout(5, n_queries=2)
    paper = model_config(name, layout, 2, tasks=_Tasks())
    budget = {"n_layers", "n_heads", "qk_channels", "n_modes", "n_pairs", "in_components", "out_components",
              "n_dim", "model_arch", "data_channels", "out_channels"}
    assert set(paper) <= budget                       # nothing but sizes: every option is the class's default
    enhanced = model_config(f"{name}_enhanced", layout, 2, tasks=_Tasks())
    added = {k: v for k, v in enhanced.items() if k not in paper}
    assert set(added) == set(ENHANCEMENTS[name]) and added["context_fit"] == "symmetric"  # symmetric data
    # every addition is off by default
    assert (defaults["input_norm"], defaults["context_fit"], defaults["shared_operator_modes"]) == (
        "slab", "none", None)
    assert defaults.get("output_map", "mlp") == "mlp" and defaults.get("attention_order") is None
    assert model_config(f"{name}_hybrid", layout, 2, tasks=_Tasks()) == enhanced
    assert row_prior(f"{name}_hybrid") == "auto" and row_prior(name) is row_prior(f"{name}_enhanced") is None
    assert base_model(f"{name}_hybrid") == name and f"{name}_hybrid" in IN_CONTEXT_MODELS
    # u = K f: no exact context part, so the context is not reproduced by construction
    model = build_model(name, ContextLayout(5), 2, tasks=_Tasks())
    x = pack_context(torch.randn(2, 5, 1, 7, 7), torch.randn(2, 5, 1, 7, 7))
    assert model.context_fit == "none" and not torch.allclose(model(x), x[:, 5:10], atol=1e-3)


def test_rows_by_name():
    with pytest.raises(ValueError, match="unknown model"):
        base_model("nips_papers")
    assert "fno_oracle" in MODELS and base_model("fno_oracle") == "fno"
    assert resolve_prior("auto", _Tasks(), 5) == "laplace"    # no local operator fits zeros
    assert resolve_prior("star") == "star"


def test_grid_aware_modes():
    from nips_plugin.baselines import grid_modes
    assert grid_modes(12, (21, 21)) == (12, 12)
    assert grid_modes(12, (11, 11, 11)) == (5, 5, 5)        # the 2-D count of coefficients
    assert grid_modes(12, (7, 30)) == (7, 12)                # no more than an axis resolves
    assert grid_modes(12, (7, 30), offset=2) == (5, 12)      # sines vanish at both ends

    class Cube(_Tasks):
        grid_shape = (11, 11, 11)

    config = model_config("nips_enhanced", ContextLayout(5, n_queries=2), 3, tasks=Cube())
    assert config["n_modes"] == (5, 5, 5) and config["shared_operator_modes"] == (5, 5, 5)
    nao = model_config("nao_enhanced", ContextLayout(5, n_queries=2), 3, tasks=Cube())
    assert nao["input_modes"] == (5, 5, 5) and nao["output_map_modes"] == (4, 4, 4)
