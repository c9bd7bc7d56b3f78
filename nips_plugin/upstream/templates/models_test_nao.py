"""Tests for NAO and LinearNAO (Nonlocal Attention Operator, Yu et al., NeurIPS 2024)."""

from pathlib import Path

import pytest
import torch
from zencfg.bunch import Bunch

from neuralop.models import NAO, LinearNAO, get_model
from neuralop.layers.incontext_layout import pack_context

DATA = Path(__file__).resolve().parent / "data"
device = "cuda" if torch.cuda.is_available() else "cpu"

GRIDS = {1: (12,), 2: (9, 8), 3: (5, 4, 4)}


def make_context(n_dim, batch_size=2, n_pairs=4, in_components=1, out_components=1, n_queries=2):
    """A packed in-context input: ``n_pairs`` (f, u) pairs and ``n_queries`` query inputs."""
    grid = GRIDS[n_dim]
    f = torch.randn(batch_size, n_pairs, in_components, *grid)
    u = torch.randn(batch_size, n_pairs, out_components, *grid)
    f_query = torch.randn(batch_size, n_queries, in_components, *grid)
    return pack_context(f, u, f_query).to(device)


def make_nao(cls, n_dim, n_pairs=4, in_components=1, out_components=1, n_queries=2, **kwargs):
    return cls(
        in_channels=n_pairs * (in_components + out_components) + n_queries * in_components,
        out_channels=(n_queries or n_pairs) * out_components,
        n_pairs=n_pairs,
        in_components=in_components,
        out_components=out_components,
        n_layers=2,
        n_heads=2,
        qk_channels=4,
        n_dim=n_dim,
        **kwargs,
    ).to(device)


@pytest.mark.parametrize("cls", [NAO, LinearNAO])
@pytest.mark.parametrize("n_dim", [1, 2, 3])
@pytest.mark.parametrize("output_map", ["mlp", "cosine"])
def test_nao(cls, n_dim, output_map):
    model = make_nao(cls, n_dim, in_components=2, output_map=output_map, output_map_modes=3)
    x = make_context(n_dim, in_components=2)

    # Test forward pass (the Trainer passes the whole batch: y is ignored)
    out = model(x, y=None)

    # Check output size: one response per query
    assert list(out.shape) == [2, 2, *GRIDS[n_dim]]

    # Check backward pass: every parameter receives a gradient
    loss = out.square().sum()
    loss.backward()
    n_unused_params = 0
    for param in model.parameters():
        if param.grad is None:
            n_unused_params += 1
    assert n_unused_params == 0, f"{n_unused_params} parameters were unused!"


@pytest.mark.parametrize("cls", [NAO, LinearNAO])
def test_attention_orders_agree(cls):
    """Without a softmax, (Q K^T) J and Q (K^T J) are the same function."""
    torch.manual_seed(0)
    quadratic = make_nao(cls, 2, attention_order="quadratic").eval()
    linear = make_nao(cls, 2, attention_order="linear").eval()
    linear.load_state_dict(quadratic.state_dict())
    x = make_context(2)
    with torch.no_grad():
        torch.testing.assert_close(linear(x), quadratic(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cls", [NAO, LinearNAO])
def test_nao_checkpoint_round_trip(cls, tmp_path):
    model = make_nao(cls, 2).eval()
    x = make_context(2)
    model.save_checkpoint(tmp_path, "nao")
    loaded = cls.from_checkpoint(tmp_path, "nao", map_location=device).to(device).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


@pytest.mark.parametrize("cls", [NAO, LinearNAO])
def test_nao_from_config(cls):
    config = Bunch(
        {
            "model": Bunch(
                {
                    "model_arch": cls._name,
                    "data_channels": 4 * 2 + 2,
                    "out_channels": 2,
                    "n_pairs": 4,
                    "n_layers": 2,
                    "qk_channels": 4,
                    "n_dim": 2,
                }
            )
        }
    )
    model = get_model(config).to(device)
    assert type(model) is cls
    assert list(model(make_context(2)).shape) == [2, 2, *GRIDS[2]]


# Outputs recorded by running the authors' scripts (NIPS/NAO_Darcy.py and NIPS/LinearNAO_Darcy.py
# of https://github.com/fishmoon1234/Nonlocal-Attention-Operator, MIT licence), with their weights
# converted to this implementation's layout: per case the class, the constructor arguments, the
# state dict, an input ``x`` and the script's output ``out`` (batch element 0).
REFERENCE_CASES = ["nao_darcy", "linear_nao_darcy"]


@pytest.mark.parametrize("case", REFERENCE_CASES)
def test_nao_matches_authors_reference(case):
    reference = torch.load(DATA / f"{case}_reference.pt", weights_only=True)
    cls = {"nao": NAO, "linear_nao": LinearNAO}[reference["model_arch"]]
    model = cls(**reference["kwargs"])
    model.load_state_dict(reference["state_dict"])
    model = model.to(device).eval()
    with torch.no_grad():
        out = model(reference["x"].to(device)).cpu()
    expected = reference["out"]
    assert out.shape == expected.shape
    assert (out - expected).abs().max() <= 1e-4 * expected.abs().max()
