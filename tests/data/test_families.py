"""Generated benchmark families: layout, reproducibility, caching, physics, resolution, OOD laws."""

import re

import numpy as np
import pytest
from sklearn.datasets import load_digits

from nips_plugin.data import families
from nips_plugin.data.families import make_darcy_tasks, make_elasticity_tasks
from nips_plugin.data.fields import digit_modulus
from nips_plugin.data.solvers import darcy_operator, elasticity_operator

SMALL = {"n_pairs": 4, "n_train": 3, "n_test": 2, "n_ood": 2, "progress": False}
SPLIT = ["train"] * 3 + ["test"] * 2 + ["ood"] * 2


def darcy(tmp_path, **kwargs):
    return make_darcy_tasks(**{"n": 11, **SMALL, "cache_dir": tmp_path, **kwargs})


def elasticity(tmp_path, **kwargs):
    return make_elasticity_tasks(**{"n": 9, **SMALL, "cache_dir": tmp_path, **kwargs})


@pytest.mark.parametrize("make, n, c, param, pde", [
    (darcy, 11, 1, "permeability", "darcy"),
    (elasticity, 9, 2, "modulus", "elasticity"),
])
def test_layout(tmp_path, make, n, c, param, pde):
    tasks = make(tmp_path)
    assert tasks.f.shape == tasks.u.shape == (7, 4, c, n, n)
    assert tasks.f.dtype == tasks.u.dtype == np.float32
    assert list(tasks.params) == [param] and tasks.params[param].shape == (7, n, n)
    assert tasks.split.tolist() == SPLIT
    assert tasks.attrs["pde"] == pde and tasks.attrs["domain"] == "[0,1]^2"
    assert tasks.attrs["n"] == n and tasks.attrs["seed"] == 0 and tasks.attrs["n_ood"] == 2
    assert tasks.select("ood").n_systems == 2


def test_reproducible_from_the_seed(tmp_path):
    a, b = darcy(tmp_path / "a"), darcy(tmp_path / "b")
    np.testing.assert_array_equal(a.f, b.f)
    np.testing.assert_array_equal(a.u, b.u)
    np.testing.assert_array_equal(a.params["permeability"], b.params["permeability"])
    c = darcy(tmp_path / "a", seed=1)
    assert not np.allclose(a.f, c.f)
    # more test systems keep the systems already drawn, OOD ones included
    more = darcy(tmp_path / "c", n_test=3)
    np.testing.assert_array_equal(more.f[:5], a.f[:5])
    np.testing.assert_array_equal(more.f[6:], a.f[5:])


def test_cache_hit_and_parameter_change(tmp_path, monkeypatch):
    first = darcy(tmp_path)
    (path,) = tmp_path.iterdir()
    assert re.fullmatch(r"darcy-[0-9a-f]{16}\.h5", path.name)

    def no_generation(*args, **kwargs):
        raise AssertionError("a cache hit must not generate")

    monkeypatch.setattr(families, "_pairs", no_generation)
    again = darcy(tmp_path)
    np.testing.assert_array_equal(again.f, first.f)
    np.testing.assert_array_equal(again.u, first.u)
    assert again.attrs == first.attrs
    with pytest.raises(AssertionError, match="cache hit"):
        darcy(tmp_path, ood="two_phase")
    monkeypatch.undo()
    darcy(tmp_path, ood="two_phase")
    assert len(list(tmp_path.glob("darcy-*.h5"))) == 2
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_default_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("NIPS_PLUGIN_CACHE", str(tmp_path))
    make_elasticity_tasks(n=5, **{**SMALL, "n_pairs": 1})
    assert len(list(tmp_path.glob("elasticity-*.h5"))) == 1


def test_responses_solve_the_pde(tmp_path):
    tasks = darcy(tmp_path)
    for b, f, u in zip(tasks.params["permeability"], tasks.f[:, :, 0], tasks.u[:, :, 0]):
        A = darcy_operator(b)
        f_int, u_int = f[:, 1:-1, 1:-1].reshape(len(f), -1).T, u[:, 1:-1, 1:-1].reshape(len(u), -1).T
        assert np.linalg.norm(A @ u_int - f_int) < 1e-5 * np.linalg.norm(f_int)
        assert np.all(u[:, 0] == 0) and np.all(u[:, :, -1] == 0)

    tasks = elasticity(tmp_path)
    nu = tasks.attrs["nu"]
    for E, f, u in zip(tasks.params["modulus"], tasks.f, tasks.u):
        K, L = elasticity_operator(E, nu)
        rhs = L @ f.reshape(len(f), -1).T.astype(np.float64)
        residual = K @ u[:, :, 1:-1, 1:-1].reshape(len(u), -1).T - rhs
        assert np.linalg.norm(residual) < 1e-5 * np.linalg.norm(rhs)


@pytest.mark.parametrize("make, n, param", [(darcy, 11, "permeability"), (elasticity, 9, "modulus")])
def test_same_systems_at_every_resolution(tmp_path, make, n, param):
    coarse, fine = make(tmp_path, n=n), make(tmp_path, n=2 * n - 1)
    np.testing.assert_allclose(fine.params[param][:, ::2, ::2], coarse.params[param], rtol=1e-6)
    np.testing.assert_allclose(fine.f[..., ::2, ::2], coarse.f, rtol=1e-5, atol=1e-6)
    # the responses differ by the discretisation error only
    diff = np.linalg.norm(fine.u[..., ::2, ::2] - coarse.u) / np.linalg.norm(coarse.u)
    assert diff < 0.15


def test_ood_law_differs(tmp_path):
    tasks = darcy(tmp_path)
    b_id = tasks.select("train", "test").params["permeability"]
    b_ood = tasks.select("ood").params["permeability"]
    assert set(np.unique(b_id)) == {3.0, 12.0}
    assert all(len(np.unique(b)) > 50 for b in b_ood)


def test_elasticity_splits_follow_the_digit_classes(tmp_path):
    tasks = elasticity(tmp_path, ood_digit=4)
    digits = load_digits()
    library = digit_modulus(digits.images / 16.0, 9).reshape(len(digits.images), -1)
    fields = tasks.params["modulus"].reshape(tasks.n_systems, -1)
    # each system's image: the nearest resampled digit (float32 round-off apart)
    chosen = np.argmin(((fields[:, None] - library[None]) ** 2).sum(-1), axis=1)
    assert len(set(chosen)) == tasks.n_systems
    labels = digits.target[chosen]
    assert np.all(labels[tasks.split != "ood"] != 4) and np.all(labels[tasks.split == "ood"] == 4)


@pytest.mark.parametrize("kwargs, message", [
    ({"law": "gaussian"}, "unknown permeability law"),
    ({"n_pairs": 0}, "n_pairs >= 1"),
    ({"n_train": -1}, "non-negative"),
    ({"n": 2}, "n >= 3"),
])
def test_bad_darcy_parameters(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        darcy(tmp_path, **kwargs)


def test_too_many_digit_images(tmp_path):
    with pytest.raises(ValueError, match="180 of digit 9"):
        elasticity(tmp_path, n_ood=1000)
