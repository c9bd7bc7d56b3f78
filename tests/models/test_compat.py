"""Importing the authors' checkpoints: outputs equal those recorded by running their code.

The oracle is data (``data/authors_reference``, see its README): for each of the
authors' four scripts a state dict, an input and the script's output, and for
each of the three released NAO checkpoints the checkpoint, an input and the
output of the NAO folder's model. No re-implementation of the scripts is trusted.
"""
from pathlib import Path

import pytest
import torch

from nips_plugin import NAO, NIPS, LinearNAO, pack_context
from nips_plugin.compat import VARIANTS, from_reference_state_dict, infer_reference_variant

DATA = Path(__file__).resolve().parent / "data" / "authors_reference"

#: fixture -> (variant, class)
FIXTURES = {
    "script_nips_darcy": ("nips_darcy", NIPS),
    "script_nips_mmnist": ("nips_mmnist", NIPS),
    "script_linear_nao_darcy": ("linear_nao_darcy", LinearNAO),
    "script_nao_darcy": ("nao_darcy", NAO),
    "released_best_model_dk40_darcy_gtou": ("nao_darcy_gtou", NAO),
    "released_best_model_dk40_darcy_gtou_deeper": ("nao_darcy_gtou", NAO),
    "released_best_model_dk20_darcy_gtou_small": ("nao_darcy_gtou", NAO),
}


def load(name):
    return torch.load(DATA / f"{name}.pt", weights_only=True)


def context(fixture):
    """The fixture's token-major input ``xy`` ``[B, 2cN, d]`` as our packed channels."""
    xy = fixture["xy"]
    B, T, d = xy.shape
    c, n = fixture.get("components", 1), fixture["grid"]
    f, u = xy.mT.reshape(B, d, 2, c, n, n).unbind(2)   # token blocks [f_1..f_c, u_1..u_c]
    return pack_context(f, u)


def relative_max_error(model, fixture):
    with torch.no_grad():
        out = model(context(fixture))                    # [B, d*c, n, n], channel = pair*c + component
    B, T, d = fixture["xy"].shape
    out = out.reshape(B, d, T // 2).mT                   # the script's [B, cN, d]
    expected = fixture["out"]
    return ((out - expected).abs().max() / expected.abs().max()).item()


@pytest.mark.parametrize("name", list(FIXTURES))
def test_import_reproduces_authors_output(name):
    fixture = load(name)
    variant, cls = FIXTURES[name]
    assert fixture.get("variant", "nao_darcy_gtou") == variant
    model = from_reference_state_dict(fixture["state_dict"], variant)
    assert type(model) is cls and not model.training
    assert (model.layout.n_pairs, model.qk_channels, len(model.layers) + 1) == (
        fixture["pairs"], fixture["dk"], fixture["layers"])
    assert relative_max_error(model, fixture) <= 1e-4


@pytest.mark.parametrize("name", list(FIXTURES))
def test_variant_is_inferred(name):
    sd = load(name)["state_dict"]
    assert infer_reference_variant(sd) == FIXTURES[name][0]
    assert infer_reference_variant({"module." + k: v for k, v in sd.items()}) == FIXTURES[name][0]


def test_variant_none_imports_released_checkpoint():
    fixture = load("released_best_model_dk20_darcy_gtou_small")
    assert relative_max_error(from_reference_state_dict(fixture["state_dict"]), fixture) <= 1e-4


def test_ambiguous_and_unknown_state_dicts_are_clear():
    # a one-layer NAO: NAO_Darcy.py or the NAO folder's model, which only the edges tell apart
    sd = {k: v for k, v in load("script_nao_darcy")["state_dict"].items()
          if k.startswith(("kernel", "fcn0")) or "_0_0" in k}
    with pytest.raises(ValueError, match="pass variant explicitly"):
        infer_reference_variant(sd)
    with pytest.raises(ValueError, match="pass variant explicitly"):
        from_reference_state_dict(sd)
    for variant in ("nao_darcy", "nao_darcy_gtou"):   # either builds when named
        assert len(from_reference_state_dict(sd, variant).layers) == 0
    with pytest.raises(ValueError, match="none of the authors' scripts"):
        infer_reference_variant({"fc0.weight": torch.zeros(2, 2)})


def test_import_errors():
    sd = load("script_nips_darcy")["state_dict"]
    assert "fno_darcy" not in VARIANTS
    with pytest.raises(ValueError, match="unknown variant"):
        from_reference_state_dict(sd, "fno_darcy")
    with pytest.raises(ValueError, match="not a 'nao_darcy' checkpoint"):
        from_reference_state_dict(sd, "nao_darcy")
    del sd["convf.1.weights2"]
    with pytest.raises(ValueError, match="convf.1.weights2"):
        from_reference_state_dict(sd, "nips_darcy")
    # a released checkpoint (LayerNorm([2N, d]) at every layer) is not NAO_Darcy.py's layout
    with pytest.raises(ValueError, match="fcn1.weight has shape"):
        from_reference_state_dict(load("released_best_model_dk20_darcy_gtou_small")["state_dict"], "nao_darcy")


def test_imported_released_checkpoint_round_trips(tmp_path):
    """The import is a plain model: neuraloperator's checkpoints save and restore it."""
    fixture = load("released_best_model_dk20_darcy_gtou_small")
    model = from_reference_state_dict(fixture["state_dict"])
    model.save_checkpoint(tmp_path, "released")
    loaded = NAO.from_checkpoint(tmp_path, "released").eval()
    assert relative_max_error(loaded, fixture) <= 1e-4
