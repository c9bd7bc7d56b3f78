"""Random fields: resolution independence, reproducibility, statistics, digit microstructures."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from nips_plugin.data.fields import (
    digit_modulus, gaussian_random_field, lognormal_field, node_coordinates, random_load, two_phase_field,
)


def test_node_coordinates_are_shared_exactly_by_refined_grids():
    assert node_coordinates(21)[0] == 0 and node_coordinates(21)[-1] == 1
    np.testing.assert_array_equal(node_coordinates(81)[::4], node_coordinates(21))


def test_grf_is_resolution_independent_and_reproducible():
    coarse = gaussian_random_field(21, 3, seed=7, length_scale=0.1)
    fine = gaussian_random_field(81, 3, seed=7, length_scale=0.1)
    assert coarse.shape == (3, 21, 21) and coarse.dtype == np.float64
    np.testing.assert_allclose(fine[:, ::4, ::4], coarse, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(gaussian_random_field(21, 3, seed=7, length_scale=0.1), coarse)
    # sample s does not depend on how many samples are drawn
    np.testing.assert_allclose(gaussian_random_field(21, 1, seed=7, length_scale=0.1)[0], coarse[0])
    assert not np.allclose(gaussian_random_field(21, 3, seed=8, length_scale=0.1), coarse)


def test_grf_has_unit_variance_everywhere_and_its_length_scale():
    g = gaussian_random_field(5, 4000, seed=0, length_scale=0.2, smoothness=1.5, n_modes=16)
    assert np.abs(g.mean()) < 0.1
    np.testing.assert_allclose(g.var(axis=0), 1.0, atol=0.12)  # at every node, boundary included

    def roughness(length):
        field = gaussian_random_field(11, 200, seed=1, length_scale=length, n_modes=16)
        return np.mean(np.diff(field, axis=1) ** 2)

    assert roughness(0.05) > 2 * roughness(0.3)


def test_two_phase_and_lognormal_maps():
    g = gaussian_random_field(11, 4, seed=0)
    b = two_phase_field(g, high=12.0, low=3.0)
    assert set(np.unique(b)) == {3.0, 12.0}
    np.testing.assert_array_equal(b == 12.0, g >= 0)
    ln = lognormal_field(g, median=6.0, sigma=0.5)
    assert np.all(ln > 0)
    np.testing.assert_allclose(np.log(ln), np.log(6.0) + 0.5 * g)


def test_random_load_offsets_probe_the_uniform_direction():
    f = random_load(9, 400, seed=3, n_components=2, offset_std=2.0, n_modes=16)
    assert f.shape == (400, 2, 9, 9)
    # the spatial mean of a load carries the offset: its variance exceeds the offset's
    assert f.mean(axis=(2, 3)).var() > 3.0
    flat = random_load(9, 400, seed=3, n_components=2, offset_std=0.0, n_modes=16)
    assert flat.mean(axis=(2, 3)).var() < 1.0
    np.testing.assert_allclose(random_load(17, 5, seed=3, n_components=2)[..., ::2, ::2],
                               random_load(9, 5, seed=3, n_components=2), atol=1e-12)


def test_digit_modulus_range_orientation_and_resolution_independence():
    images = load_digits().images[:4] / 16.0
    E = digit_modulus(images, 29, stiff=1.0, soft=0.1)
    assert E.shape == (4, 29, 29)
    assert E.min() >= 0.1 - 1e-12 and E.max() <= 1.0 + 1e-12 and E.max() > 0.5
    edges = np.concatenate([E[:, 0], E[:, -1], E[:, :, 0], E[:, :, -1]], axis=1)
    np.testing.assert_allclose(edges, 0.1)  # the frame keeps ink off the clamped boundary
    np.testing.assert_allclose(digit_modulus(images, 57)[:, ::2, ::2], E, atol=1e-12)

    # one ink pixel at the image's top-left reads at small x and large y
    dot = np.zeros((8, 8))
    dot[0, 0] = 1.0
    i, j = np.unravel_index(np.argmax(digit_modulus(dot, 41)), (41, 41))
    assert i < 20 < j


@pytest.mark.parametrize("kwargs, message", [
    ({"image": np.full((8, 8), 16.0), "n": 9}, r"\[0, 1\]"),
    ({"image": np.zeros(8), "n": 9}, "rows, cols"),
    ({"image": np.zeros((8, 8)), "n": 9, "soft": 0.0}, "positive"),
])
def test_digit_modulus_rejects_bad_inputs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        digit_modulus(**kwargs)


def test_grf_rejects_bad_parameters():
    with pytest.raises(ValueError, match="length_scale"):
        gaussian_random_field(9, 1, seed=0, length_scale=0.0)
    with pytest.raises(ValueError, match="n >= 2"):
        gaussian_random_field(1, 1, seed=0)
