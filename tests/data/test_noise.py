"""Relative Gaussian noise on the responses: its measured size, and what it leaves alone."""
import numpy as np
import pytest

from nips_plugin.data.noise import add_response_noise
from nips_plugin.data.tasks import TaskSet


def _tasks():
    rng = np.random.default_rng(0)
    scale = rng.uniform(0.1, 10, (6, 20, 1, 1, 1))          # responses of very different sizes
    return TaskSet(rng.standard_normal((6, 20, 1, 15, 15)), scale * rng.standard_normal((6, 20, 2, 15, 15)),
                   params={"b": rng.random((6, 15, 15))}, attrs={"pde": "darcy"})


@pytest.mark.parametrize("level", [0.01, 0.1])
def test_noise_has_the_stated_relative_size(level):
    tasks = _tasks()
    noisy = add_response_noise(tasks, level, seed=1)
    delta = (noisy.u.astype(np.float64) - tasks.u).reshape(6, 20, -1)
    rms = np.sqrt(np.mean(tasks.u.astype(np.float64).reshape(6, 20, -1) ** 2, axis=-1))
    # per function: standard deviation level * rms(u), mean zero, over 450 values each
    np.testing.assert_allclose(delta.std(-1) / rms, level, rtol=0.2)
    assert np.abs(delta.mean(-1) / rms).max() < 5 * level / np.sqrt(450)
    rel = np.linalg.norm(delta, axis=-1) / np.linalg.norm(tasks.u.reshape(6, 20, -1), axis=-1)
    assert rel.mean() == pytest.approx(level, rel=0.02)
    # the inputs, hidden fields, split and the original responses are untouched
    np.testing.assert_array_equal(noisy.f, tasks.f)
    np.testing.assert_array_equal(noisy.params["b"], tasks.params["b"])
    np.testing.assert_array_equal(noisy.split, tasks.split)
    assert noisy.attrs == {"pde": "darcy", "noise_level": level, "noise_seed": 1}
    np.testing.assert_array_equal(tasks.u, _tasks().u)


def test_seeded_and_zero_level():
    tasks = _tasks()
    np.testing.assert_array_equal(add_response_noise(tasks, 0.05, 3).u, add_response_noise(tasks, 0.05, 3).u)
    assert not np.array_equal(add_response_noise(tasks, 0.05, 3).u, add_response_noise(tasks, 0.05, 4).u)
    np.testing.assert_array_equal(add_response_noise(tasks, 0.0).u, tasks.u)
    for bad in (-0.1, float("nan")):
        with pytest.raises(ValueError, match="noise level"):
            add_response_noise(tasks, bad)
