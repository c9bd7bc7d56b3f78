"""The shared sine-series operator: the inverse Laplacian at initialisation, its matrix, its scale."""
import math

import pytest
import torch

from nips_plugin import NAO, NIPS, LinearNAO, pack_context
from nips_plugin.layers.context_fit import ContextFit
from nips_plugin.layers.sine_operator import SineSeriesOperator


@pytest.mark.parametrize("grid", [(41,), (21, 17), (9, 11, 10)])
def test_starts_as_the_dirichlet_laplacian_inverse(grid):
    """W = D / |k|^2: S = D pi^2 (-Laplacian)^{-1} on the sines it keeps, exactly on the nodes
    (the discrete sine transform is orthogonal), for every grid."""
    S = SineSeriesOperator(1, 1, (3,) * len(grid)).double()
    axes = torch.meshgrid(*[torch.linspace(0, 1, n, dtype=torch.float64) for n in grid], indexing="ij")
    modes = [(1,) * len(grid), (2,) + (3,) * (len(grid) - 1)]
    r = sum(math.prod(torch.sin(math.pi * k * x) for k, x in zip(ks, axes)) for ks in modes)
    expected = sum(len(grid) / sum(k * k for k in ks) * math.prod(torch.sin(math.pi * k * x)
                                                                   for k, x in zip(ks, axes)) for ks in modes)
    out = S(r.reshape(1, 1, -1), grid)
    # float32 initial weights: agreement to their rounding
    torch.testing.assert_close(out, expected.reshape(1, 1, -1), rtol=1e-6, atol=1e-7)


def test_matrix_symmetric_and_transpose():
    torch.manual_seed(0)
    S = SineSeriesOperator(2, 2, (4, 3))
    with torch.no_grad():
        S.weight.normal_()
    grid = (7, 6)
    eye = torch.eye(2 * 42)[None]
    M = S(eye, grid).mT                          # u = M r
    Mt = S(eye, grid, transpose=True).mT
    torch.testing.assert_close(Mt, M.mT, rtol=1e-5, atol=1e-6)
    r = torch.randn(1, 3, 84)
    torch.testing.assert_close(S(r, grid), r @ M.mT, rtol=1e-5, atol=1e-6)
    sym = SineSeriesOperator(1, 1, (4, 3))
    M1 = sym(torch.eye(42)[None], grid)
    torch.testing.assert_close(M1, M1.mT, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="2-D"):
        S(r, (84,))


def test_operator_scale_recovers_a_multiple_of_the_operator():
    """A system u = c S f: the context's span alone gives c back."""
    torch.manual_seed(1)
    S = SineSeriesOperator(1, 1, (5, 5))
    f = torch.randn(3, 8, 81)
    c = torch.tensor([0.5, 2.0, 7.0])
    u = c[:, None, None] * S(f, (9, 9))
    fit = ContextFit(f, u, "least_squares")
    scale = fit.operator_scale(lambda rows: S(rows, (9, 9)))
    torch.testing.assert_close(scale.flatten(), c, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cls", [NIPS, NAO, LinearNAO])
@pytest.mark.parametrize("context_fit", ["least_squares", "symmetric"])
def test_models_with_the_shared_operator(cls, context_fit):
    """u = M f holds with the whole kernel, the context is reproduced, every parameter learns."""
    dim = {"n_modes": (4, 4)} if cls is NIPS else {"n_dim": 2}
    options = dict(n_pairs=4, n_layers=2, qk_channels=5, context_fit=context_fit, shared_operator_modes=3, **dim)
    model = cls(in_channels=11, out_channels=3, **options)
    f, fq = torch.randn(2, 4, 1, 9, 8), torch.randn(2, 3, 1, 9, 8)
    A = torch.randn(72, 72)
    u = (f.flatten(2) @ (A @ A.T / 72)).reshape(f.shape)   # a symmetric system (no noise to remove)
    out = model(pack_context(f, u, fq))
    out.square().sum().backward()
    assert model.shared_operator.weight.grad.abs().sum() > 0
    with torch.no_grad():
        M = model.extract_kernel(pack_context(f, u, fq))
        via_kernel = torch.einsum("bij,bmj->bmi", M, fq.flatten(2)).reshape(out.shape)
        torch.testing.assert_close(via_kernel, out, rtol=1e-4, atol=1e-5 * out.abs().max())
        context = cls(in_channels=8, out_channels=4, **options)
        context.load_state_dict(model.state_dict())
        torch.testing.assert_close(context(pack_context(f, u)), u.flatten(1, 2), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="needs a context_fit"):
        cls(in_channels=11, out_channels=3, **{**options, "context_fit": "none"})
