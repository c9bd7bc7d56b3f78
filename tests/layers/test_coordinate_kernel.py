"""CoordinateKernel (NAO's W^P): the kernel matrix against the MLP on explicit edges."""
import pytest
import torch

from nips_plugin.layers.coordinate_kernel import CoordinateKernel


def node_grid(n, low, high):
    """``[n, n, 2]``: node (a, b) at (linspace[a], linspace[b])."""
    axis = torch.linspace(low, high, n)
    return torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1)


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("swap", [False, True])
def test_kernel_matrix_equals_mlp_on_edges(transposed, swap):
    """Edges built the way the authors do: (grid[i], grid[j]), or, for the NAO folder's model,
    (grid[i], gridT[j]) with gridT the grid with its two axes swapped, then flattened."""
    n, coord_range = 5, (-1.0, 1.0)
    kernel = CoordinateKernel(2, coord_range=coord_range, transposed=transposed)
    grid = node_grid(n, *coord_range)
    first = grid.reshape(-1, 2)
    second = (grid.permute(1, 0, 2) if transposed else grid).reshape(-1, 2)
    N = n * n
    edges = torch.cat([first[:, None].expand(N, N, 2), second[None].expand(N, N, 2)], -1)
    with torch.no_grad():
        W = kernel.layers(edges)[..., 0]                        # [i, j] = MLP(grid[i], second[j])
        if swap:  # the MLP's first argument is the column point
            edges = torch.cat([first[None].expand(N, N, 2), second[:, None].expand(N, N, 2)], -1)
            W = kernel.layers(edges)[..., 0]                    # [i, j] = MLP(grid[j], second[i])
        torch.testing.assert_close(kernel((n, n), swap=swap), W)
        values = torch.randn(3, N)
        torch.testing.assert_close(kernel.contract(values, (n, n), swap=swap, chunk_bytes=1), values @ W)
