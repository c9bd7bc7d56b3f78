"""Importing the authors' checkpoints: outputs equal a plain implementation of their scripts."""
import pytest
import torch
from reference_forward import random_reference_state_dict, reference_forward

from nips_plugin import NAO, NIPS, LinearNAO, pack_context
from nips_plugin.compat import from_reference_state_dict


@pytest.mark.parametrize("variant,cls", [("nips_darcy", NIPS), ("nips_mmnist", NIPS),
                                         ("linear_nao_darcy", LinearNAO), ("nao_darcy", NAO)])
@pytest.mark.parametrize("n", [9, 8])
def test_reference_import_reproduces_script_output(variant, cls, n):
    sd = random_reference_state_dict(variant, n=n, d=6, dk=5, n_layers=3, n_heads=2)
    model = from_reference_state_dict(sd, variant)
    assert type(model) is cls and not model.training
    assert (model.layout.n_pairs, model.qk_channels, model.n_heads, len(model.layers) + 1) == (6, 5, 2, 3)
    c = 2 if variant == "nips_mmnist" else 1
    f, u = torch.randn(3, 6, c, n, n), torch.randn(3, 6, c, n, n)
    with torch.no_grad():
        expected = reference_forward(sd, variant, f, u)
        out = model(pack_context(f, u)).reshape(expected.shape)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5 * expected.abs().max())


def test_reference_import_errors():
    sd = random_reference_state_dict("nips_darcy", n=9)
    with pytest.raises(ValueError, match="unknown variant"):
        from_reference_state_dict(sd, "fno_darcy")
    with pytest.raises(ValueError, match="not a 'nao_darcy' checkpoint"):
        from_reference_state_dict(sd, "nao_darcy")
    del sd["convf.1.weights2"]
    with pytest.raises(ValueError, match="convf.1.weights2"):
        from_reference_state_dict(sd, "nips_darcy")
