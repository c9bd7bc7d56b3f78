"""Coordinate fields: the same continuous function at every resolution."""
import math

import pytest
import torch

from nips_plugin.layers.attention import SlabNorm
from nips_plugin.layers.cosine_field import CosineField


@pytest.mark.parametrize("n_modes", [(5,), (4, 3), (3, 2, 2)])
def test_cosine_field_is_the_cosine_series(n_modes):
    field = CosineField(2, n_modes)
    with torch.no_grad():
        field.coefficients.normal_()
    grid = (7, 5, 6)[:len(n_modes)]
    values = field(grid)
    assert values.shape == (2, *grid)
    # direct evaluation of sum_k C_k prod_i cos(pi k_i x_i) at one node
    node = tuple(n // 2 for n in grid)
    x = [i / (n - 1) for i, n in zip(node, grid)]
    direct = sum(field.coefficients[(slice(None), *k)] * math.prod(math.cos(math.pi * ki * xi)
                                                                   for ki, xi in zip(k, x))
                 for k in torch.cartesian_prod(*[torch.arange(m) for m in n_modes]).reshape(-1, len(n_modes))
                 .tolist())
    torch.testing.assert_close(values[(slice(None), *node)], direct)


def test_coordinate_norm_is_resolution_independent():
    """The 21x21 grid's nodes are every other node of the 41x41 grid: the learned affine
    (weight and bias fields) takes the same values there."""
    norm = SlabNorm(3, n_blocks=2, n_modes=(6, 6))
    with torch.no_grad():
        norm.weight_field.coefficients.normal_()
        norm.bias_field.coefficients.normal_()
    coarse_w, coarse_b = norm._token_fields((21, 21))
    fine_w, fine_b = norm._token_fields((41, 41))
    sub = lambda t: t.reshape(2, 41, 41, 3)[:, ::2, ::2].reshape(-1, 3)
    torch.testing.assert_close(sub(fine_w), coarse_w)
    torch.testing.assert_close(sub(fine_b), coarse_b)
    # at initialisation the coordinate affine is the identity (weight 1, bias 0)
    fresh = SlabNorm(3, n_blocks=2, n_modes=(6, 6))
    x = torch.randn(2, 2 * 81, 3)
    torch.testing.assert_close(fresh(x, (9, 9)), SlabNorm(3)(x))
