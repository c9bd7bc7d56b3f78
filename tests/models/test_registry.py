"""Registration in neuraloperator's zoo, get_model and checkpoint round trips."""
import pytest
import torch
from neuralop.models.base_model import BaseModel, available_models, get_model
from zencfg.bunch import Bunch

import nips_plugin
from nips_plugin import pack_context
from nips_plugin.layers.context import ContextLayout
from nips_plugin.layers.cosine_kernel import CosineKernel
from nips_plugin.training.zoo import build_model


def test_registered_next_to_fno():
    names = available_models()
    for name in ("nips", "nao", "linear_nao", "fno", "tfno"):
        assert name in names
    assert BaseModel._models["nips"] is nips_plugin.NIPS
    assert BaseModel._models["linear_nao"] is nips_plugin.LinearNAO


@pytest.mark.parametrize("arch,extra", [("nips", {"n_modes": (6, 6)}), ("nao", {}), ("linear_nao", {}),
                                        ("nao", {"output_map": "cosine", "output_map_modes": (3, 4),
                                                 "attention_order": "linear"})])
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


@pytest.mark.parametrize("name", ["nao", "linear_nao"])
def test_zoo_rows_of_nao(name):
    """The zoo's ``nao`` / ``linear_nao`` rows are the paper's (MLP W^P, the class's attention
    order); ``*_enhanced`` uses the cosine-series W^P and linear-order attention."""
    paper = build_model(name, ContextLayout(4, n_queries=2), 2)
    assert not isinstance(paper.output_map_f, CosineKernel)
    assert paper.attention == ("quadratic" if name == "nao" else "linear")
    model = build_model(f"{name}_enhanced", ContextLayout(4, n_queries=2), 2)
    assert isinstance(model.output_map_f, CosineKernel) and isinstance(model.output_map_u, CosineKernel)
    assert model.attention == "linear" and all(layer.attention == "linear" for layer in model.layers)


def test_unknown_model_name_is_clear():
    with pytest.raises(ValueError, match="expected one of"):
        get_model(Bunch({"model": Bunch({"model_arch": "nipz", "data_channels": 3})}))


def test_models_import_closure_is_torch_and_neuralop_only():
    """Importing the models loads no other part of the package (data, baselines, training,
    evaluation, interpretation), and none of the modules it loads imports scipy, hashlib or h5py:
    what an upstream contribution needs."""
    import ast
    import importlib
    import subprocess
    import sys
    code = ("import sys, nips_plugin.models; "
            "print('\\n'.join(m for m in sys.modules if m.startswith('nips_plugin')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert "nips_plugin.models.nips" in loaded and "nips_plugin.layers.attention" in loaded
    assert all(m == "nips_plugin" or m.split(".")[1] in ("models", "layers") for m in loaded), loaded
    for name in loaded:
        with open(importlib.import_module(name).__file__) as source:
            tree = ast.parse(source.read())
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and node.module and not node.level}
        assert not imported & {"scipy", "hashlib", "h5py", "numpy"}, (name, imported)
