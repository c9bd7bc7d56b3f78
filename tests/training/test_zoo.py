"""The zoo's rows: the enhanced in-context models and their papers' configurations."""
import numpy as np
import pytest
import torch

from nips_plugin import pack_context
from nips_plugin.layers.context import ContextLayout
from nips_plugin.training.zoo import IN_CONTEXT_MODELS, MODELS, base_model, build_model, model_config


class _Tasks:
    """What model_config reads of a TaskSet: the grid, the measured symmetry and pairs (all
    zero: no local operator fits them)."""
    grid_shape = (7, 7)
    n_systems = 1
    f = u = np.zeros((1, 5, 1, 7, 7))
    response_asymmetry = staticmethod(lambda: 0.0)
    indices = staticmethod(lambda split: np.arange(1))


@pytest.mark.parametrize("name", ["nips", "nao", "linear_nao"])
def test_paper_rows_are_the_models_without_the_enhancements(name):
    layout = ContextLayout(5, n_queries=2)
    enhanced = model_config(name, layout, 2, tasks=_Tasks())
    paper = model_config(f"{name}_paper", layout, 2, tasks=_Tasks())
    assert base_model(f"{name}_paper") == name and f"{name}_paper" in IN_CONTEXT_MODELS
    assert paper["model_arch"] == enhanced["model_arch"] == name
    # the same enhancements for all: symmetric data -> the symmetric fit; coordinate input fields
    assert (enhanced["context_fit"], enhanced["input_norm"]) == ("symmetric", "coordinate")
    assert (paper["context_fit"], paper["input_norm"], paper["grid_shape"]) == ("none", "token_affine", (7, 7))
    assert enhanced["local_operator"] is paper["local_operator"] is None
    model = build_model(f"{name}_paper", layout, 2, tasks=_Tasks())
    x = pack_context(torch.randn(2, 5, 1, 7, 7), torch.randn(2, 5, 1, 7, 7), torch.randn(2, 2, 1, 7, 7))
    assert model(x).shape == (2, 2, 7, 7)
    # u = K f: no exact context part, so the context is not reproduced by construction
    context = build_model(f"{name}_paper", ContextLayout(5), 2, tasks=_Tasks())
    assert not torch.allclose(context(x[:, :10]), x[:, 5:10], atol=1e-3)


def test_paper_rows_need_the_grid():
    with pytest.raises(ValueError, match="needs the tasks"):
        model_config("nips_paper", ContextLayout(5, n_queries=2), 2)
    with pytest.raises(ValueError, match="unknown model"):
        base_model("nips_papers")
    assert "fno_oracle" in MODELS and base_model("fno_oracle") == "fno"


def test_grid_aware_modes():
    from nips_plugin.training.zoo import grid_modes
    assert grid_modes(12, (21, 21)) == (12, 12)
    assert grid_modes(12, (11, 11, 11)) == (5, 5, 5)        # the 2-D count of coefficients
    assert grid_modes(12, (7, 30)) == (7, 12)                # no more than an axis resolves
    assert grid_modes(12, (7, 30), offset=2) == (5, 12)      # sines vanish at both ends

    class Cube(_Tasks):
        grid_shape = (11, 11, 11)

    config = model_config("nips", ContextLayout(5, n_queries=2), 3, tasks=Cube())
    assert config["n_modes"] == (5, 5, 5) and config["shared_operator_modes"] == (5, 5, 5)
    nao = model_config("nao", ContextLayout(5, n_queries=2), 3, tasks=Cube())
    assert nao["input_modes"] == (5, 5, 5) and nao["output_map_modes"] == (4, 4, 4)
