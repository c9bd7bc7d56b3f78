"""Registration in neuraloperator's zoo, get_model and checkpoint round trips."""
import pytest
import torch
from neuralop.models.base_model import BaseModel, available_models, get_model
from zencfg.bunch import Bunch

import nips_plugin
from nips_plugin import pack_context


def test_registered_next_to_fno():
    names = available_models()
    for name in ("nips", "nao", "linear_nao", "fno", "tfno"):
        assert name in names
    assert BaseModel._models["nips"] is nips_plugin.NIPS
    assert BaseModel._models["linear_nao"] is nips_plugin.LinearNAO


@pytest.mark.parametrize("arch,extra", [("nips", {"n_modes": (6, 6)}), ("nao", {}), ("linear_nao", {})])
def test_get_model_and_checkpoint_round_trip(arch, extra, tmp_path):
    config = Bunch({"model": Bunch({"model_arch": arch, "data_channels": 2 * 5 * 2 + 3 * 2,
                                    "out_channels": 3 * 2, "n_pairs": 5, "in_components": 2,
                                    "out_components": 2, "n_layers": 2, "qk_channels": 4, **extra})})
    model = get_model(config)
    assert isinstance(model, BaseModel._models[arch])
    x = pack_context(torch.randn(2, 5, 2, 8, 8), torch.randn(2, 5, 2, 8, 8), torch.randn(2, 3, 2, 8, 8))
    model.save_checkpoint(tmp_path, "m")
    loaded = type(model).from_checkpoint(tmp_path, "m")
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_unknown_model_name_is_clear():
    with pytest.raises(ValueError, match="expected one of"):
        get_model(Bunch({"model": Bunch({"model_arch": "nipz", "data_channels": 3})}))
