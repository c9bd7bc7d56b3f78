"""Exact discrete Green's operators against the solvers, in the kernel layout."""

import numpy as np
import pytest

from nips_plugin.data.fields import gaussian_random_field, lognormal_field
from nips_plugin.data.solvers import solve_darcy, solve_elasticity
from nips_plugin.data.tasks import TaskSet
from nips_plugin.interpret import darcy_greens, elasticity_greens, greens_operator
from nips_plugin.interpret.greens import interior_dofs

N = 9


def field(seed=0, n=N):
    return lognormal_field(gaussian_random_field(n, 1, seed, 0.3), 2.0, 0.5)[0]


def boundary(n, components=1):
    mask = np.ones(components * n * n, bool)
    mask[interior_dofs(n, components)] = False
    return mask


def test_darcy_greens_is_the_solver():
    b = field()
    f = np.random.default_rng(1).standard_normal((5, N, N))  # boundary values too: ignored by both
    G = darcy_greens(b)
    assert G.shape == (N * N, N * N)
    np.testing.assert_allclose(f.reshape(5, -1) @ G.T, solve_darcy(b, f).reshape(5, -1), atol=1e-12)
    np.testing.assert_allclose(G, G.T, atol=1e-14)
    edge = boundary(N)
    assert not G[edge].any() and not G[:, edge].any()


def test_elasticity_greens_is_the_solver_component_major():
    E = field(2)
    f = np.random.default_rng(3).standard_normal((4, 2, N, N))
    G = elasticity_greens(E, nu=0.25)
    assert G.shape == (2 * N * N, 2 * N * N)
    u = solve_elasticity(E, f, nu=0.25)
    np.testing.assert_allclose(f.reshape(4, -1) @ G.T, u.reshape(4, -1), atol=1e-12 * np.abs(u).max())
    assert not G[boundary(N, 2)].any()
    # a load along x alone moves both components (Poisson coupling), the layout keeps them apart
    assert np.abs(G[:N * N, :N * N]).max() > 0 and np.abs(G[N * N:, :N * N]).max() > 0


def test_greens_operator_reads_the_pde_and_nu_from_tasks():
    E = field(4)
    f = np.zeros((1, 1, 2, N, N), np.float32)
    tasks = TaskSet(f, f, {"modulus": E[None]}, attrs={"pde": "elasticity", "nu": 0.2})
    np.testing.assert_allclose(greens_operator(tasks, E), elasticity_greens(E, 0.2))
    np.testing.assert_allclose(greens_operator("darcy", E), darcy_greens(E))
    with pytest.raises(ValueError, match="unknown PDE 'heat'"):
        greens_operator("heat", E)
    with pytest.raises(ValueError, match="positive"):
        darcy_greens(-E)
