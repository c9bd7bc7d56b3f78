"""Tests for NIPS (Neural Interpretable PDEs, Liu & Yu, ICML 2025)."""

from pathlib import Path

import pytest
import torch
from zencfg.bunch import Bunch

from neuralop.models import NIPS, get_model
from neuralop.layers.incontext_layout import pack_context

DATA = Path(__file__).resolve().parent / "data"
device = "cuda" if torch.cuda.is_available() else "cpu"

GRIDS = {1: (12,), 2: (9, 8), 3: (6, 5, 5)}


def make_context(n_dim, batch_size=2, n_pairs=4, in_components=1, out_components=1, n_queries=2):
    """A packed in-context input: ``n_pairs`` (f, u) pairs and ``n_queries`` query inputs."""
    grid = GRIDS[n_dim]
    f = torch.randn(batch_size, n_pairs, in_components, *grid)
    u = torch.randn(batch_size, n_pairs, out_components, *grid)
    f_query = torch.randn(batch_size, n_queries, in_components, *grid)
    return pack_context(f, u, f_query).to(device)


def make_nips(n_dim, n_pairs=4, in_components=1, out_components=1, n_queries=2, **kwargs):
    return NIPS(
        in_channels=n_pairs * (in_components + out_components) + n_queries * in_components,
        out_channels=(n_queries or n_pairs) * out_components,
        n_pairs=n_pairs,
        in_components=in_components,
        out_components=out_components,
        n_layers=3,
        n_heads=2,
        qk_channels=4,
        n_modes=(4,) * n_dim,
        **kwargs,
    ).to(device)


@pytest.mark.parametrize("n_dim", [1, 2, 3])
@pytest.mark.parametrize("components", [(1, 1), (2, 1)])
@pytest.mark.parametrize("filter_per_head", [False, True])
def test_nips(n_dim, components, filter_per_head):
    in_components, out_components = components
    model = make_nips(
        n_dim,
        in_components=in_components,
        out_components=out_components,
        filter_per_head=filter_per_head,
    )
    x = make_context(n_dim, in_components=in_components, out_components=out_components)

    # Test forward pass (the Trainer passes the whole batch: y is ignored)
    out = model(x, y=None)

    # Check output size: one response per query
    assert list(out.shape) == [2, 2 * out_components, *GRIDS[n_dim]]

    # Check backward pass: every parameter receives a gradient
    loss = out.square().sum()
    loss.backward()
    n_unused_params = 0
    for param in model.parameters():
        if param.grad is None:
            n_unused_params += 1
    assert n_unused_params == 0, f"{n_unused_params} parameters were unused!"


def test_nips_reconstructs_context_without_queries():
    model = make_nips(2, n_queries=0)
    x = make_context(2, n_queries=0)
    assert list(model(x).shape) == [2, 4, *GRIDS[2]]


def test_nips_checkpoint_round_trip(tmp_path):
    model = make_nips(2).eval()
    x = make_context(2)
    model.save_checkpoint(tmp_path, "nips")
    loaded = NIPS.from_checkpoint(tmp_path, "nips", map_location=device).to(device).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_nips_from_config():
    config = Bunch(
        {
            "model": Bunch(
                {
                    "model_arch": "nips",
                    "data_channels": 4 * 2 + 2,
                    "out_channels": 2,
                    "n_pairs": 4,
                    "n_layers": 2,
                    "qk_channels": 4,
                    "n_modes": [4, 4],
                }
            )
        }
    )
    model = get_model(config).to(device)
    assert isinstance(model, NIPS)
    assert list(model(make_context(2)).shape) == [2, 2, *GRIDS[2]]


# Outputs recorded by running the authors' scripts (NIPS/NIPS_Darcy.py and NIPS/NIPS_MMNIST.py of
# https://github.com/fishmoon1234/Nonlocal-Attention-Operator, MIT licence), with their weights
# converted to this implementation's layout: per case the constructor arguments, the state dict,
# an input ``x`` and the script's output ``out`` (batch element 0).
REFERENCE_CASES = ["nips_darcy", "nips_mmnist"]


@pytest.mark.parametrize("case", REFERENCE_CASES)
def test_nips_matches_authors_reference(case):
    reference = torch.load(DATA / f"{case}_reference.pt", weights_only=True)
    model = NIPS(**reference["kwargs"])
    model.load_state_dict(reference["state_dict"])
    model = model.to(device).eval()
    with torch.no_grad():
        out = model(reference["x"].to(device)).cpu()
    expected = reference["out"]
    assert out.shape == expected.shape
    assert (out - expected).abs().max() <= 1e-4 * expected.abs().max()
