"""CosineKernel (the cheap W^P): against the cosine series evaluated directly at the nodes."""
import math

import pytest
import torch

from nips_plugin.layers.cosine_kernel import CosineKernel


def direct_kernel(kernel, grid_shape, swap=False):
    """``W[(r, i), (c, j)] = sum_kl C[r, k, c, l] phi_k(x_i) phi_l(x_j)`` (``x_j, x_i`` with swap),
    ``phi_k(x) = prod_d cos(pi k_d t_d)`` at the nodes ``t_d = j_d / (n_d - 1)``, in float64."""
    nodes = torch.cartesian_prod(*[torch.arange(n, dtype=torch.float64) / (n - 1) for n in grid_shape])
    modes = torch.cartesian_prod(*[torch.arange(m, dtype=torch.float64) for m in kernel.n_modes])
    nodes, modes = nodes.reshape(-1, len(grid_shape)), modes.reshape(-1, len(grid_shape))
    phi = torch.cos(math.pi * nodes[:, None, :] * modes[None]).prod(-1)            # [N, M]
    C = kernel.coefficients.detach().double()                                       # [a, M, b, M]
    # W(x_j, x_i) with swap: the row point x_i takes the second argument's basis index l
    W = torch.einsum("il,rkcl,jk->ricj" if swap else "ik,rkcl,jl->ricj", phi, C, phi)
    N = phi.shape[0]
    return W.reshape(kernel.rows * N, kernel.cols * N)


@pytest.mark.parametrize("n_modes,grid", [((5,), (11,)), ((4, 3), (9, 8)), ((3, 2, 2), (5, 6, 4))])
@pytest.mark.parametrize("rows,cols", [(1, 1), (2, 1), (2, 2)])
@pytest.mark.parametrize("swap", [False, True])
def test_kernel_matrix_and_contraction_are_the_cosine_series(n_modes, grid, rows, cols, swap):
    kernel = CosineKernel(n_modes, rows, cols)
    W = direct_kernel(kernel, grid, swap)
    values = torch.randn(2, 3, rows * math.prod(grid))
    with torch.no_grad():
        torch.testing.assert_close(kernel(grid, swap=swap).double(), W, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(kernel.contract(values, grid, swap=swap).double(), values.double() @ W,
                                   rtol=1e-5, atol=1e-5)
        # the swapped kernel is the transpose of the other (one component each way)
        if rows == cols == 1:
            torch.testing.assert_close(kernel(grid, swap=swap), kernel(grid, swap=not swap).T)


def test_resolution_independent():
    """The 9x7 grid's nodes are every other node of the 17x13 grid: same kernel values there."""
    kernel = CosineKernel((6, 5), rows=2, cols=1)
    with torch.no_grad():
        coarse = kernel((9, 7)).view(2, 9, 7, 1, 9, 7)
        fine = kernel((17, 13)).view(2, 17, 13, 1, 17, 13)
        torch.testing.assert_close(fine[:, ::2, ::2, :, ::2, ::2], coarse)
    assert kernel.coefficients.numel() == 2 * 30 * 1 * 30  # the same parameters at every grid


def test_gradients_match_the_dense_kernel():
    """The factored contraction's gradients (values and coefficients) equal those of values @ W."""
    kernel, grid = CosineKernel((4, 3), rows=2, cols=2).double(), (7, 6)
    values = torch.randn(3, 2 * 42, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(3, 2 * 42, dtype=torch.float64)
    grads = []
    for out in (kernel.contract(values, grid, swap=True), values @ kernel(grid, swap=True)):
        grads.append(torch.autograd.grad((weights * out).sum(), (values, kernel.coefficients)))
    for factored, dense in zip(*grads):
        assert dense.abs().sum() > 0
        torch.testing.assert_close(factored, dense)


def test_clear_errors():
    with pytest.raises(ValueError, match="n_modes"):
        CosineKernel((4, 0))
    with pytest.raises(ValueError, match="n_modes"):
        CosineKernel(())
    with pytest.raises(ValueError, match="2-D"):
        CosineKernel((4, 4)).contract(torch.randn(1, 9), (9,))
