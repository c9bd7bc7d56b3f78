"""The local operator fitted to one context: exact Green's operators from the package's verified
solvers (finite-difference Darcy, Q1 elasticity with its consistent load), a non-symmetric
operator, held-out pairs, and what it refuses."""
import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from nips_plugin.data.fields import gaussian_random_field, lognormal_field, random_load
from nips_plugin.data.noise import add_response_noise
from nips_plugin.data.solvers import darcy_operator, solve_darcy, solve_elasticity
from nips_plugin.interpret.greens import darcy_greens, elasticity_greens, interior_dofs
from nips_plugin.baselines.local_operator import (LocalOperatorFit, context_cv_error, local_operator_prior,
                                               n_unknowns, select_local_operator, stencil_offsets)


def darcy_pairs(n=13, d=20, seed=0):
    b = lognormal_field(gaussian_random_field(n, 1, seed, length_scale=0.3), median=2.0, sigma=1.0)[0]
    f = random_load(n, d, seed + 1, length_scale=0.2, offset_std=0.3)
    return b, f, solve_darcy(b, f.astype(np.float64))


def relative(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def test_offsets_and_unknowns():
    assert stencil_offsets(2, "star")[0] == (0, 0) and len(stencil_offsets(2, "star")) == 5
    assert len(stencil_offsets(3, "box")) == 27 and len(set(stencil_offsets(3, "box"))) == 27
    assert n_unknowns("star", 2, 1) == 5 and n_unknowns("box+load", 2, 2) == 2 * 9 + 8
    with pytest.raises(ValueError, match="local operator must be one of"):
        LocalOperatorFit(np.zeros((3, 1, 5, 5)), np.zeros((3, 1, 5, 5)), "cross")


@pytest.mark.parametrize("operator", ["star", "box", "star+load"])
def test_finite_difference_darcy_greens_operator_is_recovered(operator):
    """The 5-point Darcy operator lies in every neighbourhood: 20 pairs give its Green's operator."""
    b, f, u = darcy_pairs()
    G = LocalOperatorFit(f, u, operator).matrix()
    assert relative(G, darcy_greens(b)) < 1e-4   # the fit's ridge: 1e-10


def test_consistent_load_elasticity_needs_the_load_stencil():
    """Q1 elasticity solves K u = L f (a 9-node stencil on both sides): box+load recovers K^{-1} L,
    the box without the load side does not."""
    n, d = 9, 36
    E = np.where(gaussian_random_field(n, 1, 3, length_scale=0.3)[0] > 0, 8.0, 1.0)
    f = random_load(n, d, 4, n_components=2, length_scale=0.2)
    u = solve_elasticity(E, f.astype(np.float64))
    G = elasticity_greens(E)
    exact, without_load = (relative(LocalOperatorFit(f, u, op).matrix(), G) for op in ("box+load", "box"))
    assert exact < 1e-4 and without_load > 100 * exact
    # 30 pairs, 26 unknowns per node: 5 folds would leave 24, so it cross-validates with 10
    fit, error = select_local_operator(f[:30], u[:30])
    assert fit.operator == "box+load" and error < 1e-4
    assert select_local_operator(f[:26], u[:26])[0].operator != "box+load"  # even leave-one-out is short


def test_load_stencil_does_not_degenerate_on_fine_grids():
    """Loads smooth on the grid's scale nearly satisfy a load stencil with a zero sum (A -> 0): the
    fit fixes the load side's sum, so 30 pairs on a 57x57 grid still predict held-out pairs
    (0.0026 here; 0.52 with the load's centre fixed instead)."""
    n = 57
    E = np.where(gaussian_random_field(n, 1, 3, length_scale=0.3)[0] > 0, 8.0, 1.0)
    f = random_load(n, 34, 4, n_components=2, length_scale=0.2)
    u = solve_elasticity(E, f.astype(np.float64))
    pred = LocalOperatorFit(f[:30], u[:30], "box+load").apply(f[30:].reshape(4, -1))
    assert relative(pred, u[30:].reshape(4, -1)) < 0.01


def test_non_symmetric_operator():
    """Diffusion plus central advection: a non-symmetric 5-point operator, recovered by the star."""
    n, d = 11, 12
    m = n - 2
    A = darcy_operator(np.ones((n, n))).tocsr()
    shift = sp.kron(sp.eye(m), sp.diags([1.0, -1.0], [1, -1], shape=(m, m)))   # d/dy, up to 2h
    A = (A + 30.0 * (n - 1) * shift).tocsc()
    f = random_load(n, d, 5, length_scale=0.2, offset_std=0.3).astype(np.float64)
    u = np.zeros_like(f)
    inner = interior_dofs(n)
    u.reshape(d, -1)[:, inner] = sp.linalg.spsolve(A, f.reshape(d, -1)[:, inner].T).T
    G = np.zeros((n * n, n * n))
    G[np.ix_(inner, inner)] = np.linalg.inv(A.toarray())
    assert relative(G, G.T) > 0.1
    assert relative(LocalOperatorFit(f, u, "star").matrix(), G) < 1e-6


def test_selection_predicts_held_out_pairs():
    """The chosen operator predicts pairs outside the context of a system whose responses
    come from a solve on a grid twice as fine (no stencil on the data's grid is exact): better
    than the context's least squares by a wide margin."""
    n_fine, d = 25, 30
    b = lognormal_field(gaussian_random_field(n_fine, 1, 6, length_scale=0.3), median=1.0, sigma=0.7)[0]
    f = random_load(n_fine, d + 10, 7, length_scale=0.2, offset_std=0.3).astype(np.float64)
    u = solve_darcy(b, f)[..., ::2, ::2]
    f = f[..., ::2, ::2]
    fit, cv = select_local_operator(f[:d], u[:d])
    held = fit.apply(f[d:].reshape(10, -1))
    error = np.mean(np.linalg.norm(held - u[d:].reshape(10, -1), axis=1) / np.linalg.norm(u[d:].reshape(10, -1), axis=1))
    F, U = f[:d].reshape(d, -1), u[:d].reshape(d, -1)
    lstsq = (f[d:].reshape(10, -1) @ np.linalg.pinv(F)) @ U
    lstsq_error = np.mean(np.linalg.norm(lstsq - u[d:].reshape(10, -1), axis=1)
                          / np.linalg.norm(u[d:].reshape(10, -1), axis=1))
    assert error < 0.05 and error < lstsq_error / 3
    assert cv == pytest.approx(error, rel=1.0)   # the context's own estimate is of the right size


def test_what_it_refuses():
    b, f, u = darcy_pairs(d=12)
    # noise on every value (the boundary too): no local relation is trusted
    noisy = u + 0.01 * np.abs(u).max() * np.random.default_rng(0).standard_normal(u.shape)
    assert select_local_operator(f, noisy) == (None, math.inf)
    # too few pairs for any candidate
    assert select_local_operator(f[:5], u[:5]) == (None, math.inf)
    # a predictor that fails counts as infinitely wrong
    def fail(*args):
        raise RuntimeError("singular")
    assert context_cv_error(f, u, fail) == math.inf
    # batched prior: used where it applies, zeros elsewhere
    F, U = torch.tensor(np.stack([f, f])), torch.tensor(np.stack([u, noisy]))
    rows = F.flatten(2)[:, :3]
    prior, used = local_operator_prior(F, U, "star", rows)
    assert used.tolist() == [True, False] and prior[1].abs().max() == 0
    assert relative(prior[0].numpy(), u.reshape(12, -1)[:3]) < 1e-4      # the context's own responses


def test_the_zoo_on_clean_and_noisy_tasks():
    """``local_operator="auto"`` on Darcy tasks: the star when clean; with 1% noise its equation
    error is refused and the output-error fit chosen; with 10%, 8 pairs are too few for that
    too (it loses to the context-scaled Laplacian)."""
    from nips_plugin.training.run import load_data
    from nips_plugin.training.zoo import resolve_local_operator
    tasks = load_data("tiny", progress=False)
    assert resolve_local_operator("auto", tasks, 8) == "star"   # 8 pairs: only the star fits
    assert resolve_local_operator("auto", add_response_noise(tasks, 0.01), 8) == "star/output"
    assert resolve_local_operator("auto", add_response_noise(tasks, 0.1), 8) is None
    assert resolve_local_operator("box", tasks, 8) == "box"
