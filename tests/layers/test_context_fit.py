"""The exact part of a linear operator given its context: against direct dense solves."""
import numpy as np
import pytest
import torch

from nips_plugin.layers.context_fit import ContextFit

B, D, N = 2, 6, 40


def linear_system(seed=0, symmetric=True, n_out=N):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(N, n_out, generator=g, dtype=torch.float64)
    G = A @ A.T / N if symmetric else torch.randn(n_out, N, generator=g, dtype=torch.float64)
    F = torch.randn(B, D, N, generator=g, dtype=torch.float64)
    return G, F, F @ G.T, torch.randn(B, 3, N, generator=g, dtype=torch.float64)


def test_least_squares_against_a_direct_solve():
    G, F, U, f = linear_system(symmetric=False, n_out=25)
    fit = ContextFit(F, U, "least_squares")
    for b in range(B):
        # numpy's least squares: min ||F^T a - f|| per query, then a U
        a = np.linalg.lstsq(F[b].numpy().T, f[b].numpy().T, rcond=None)[0]
        np.testing.assert_allclose(fit.predict(f)[b].numpy(), a.T @ U[b].numpy(), atol=1e-10)
        np.testing.assert_allclose(fit.kernel()[b].numpy(), U[b].numpy().T @ np.linalg.pinv(F[b].numpy().T),
                                   atol=1e-10)
    # the residual is orthogonal to the context inputs and the context is reproduced exactly
    assert fit.residual(f).matmul(F.mT).abs().max() < 1e-10
    torch.testing.assert_close(fit.predict(F), U)


def test_symmetric_completion():
    G, F, U, f = linear_system()
    fit = ContextFit(F, U, "symmetric")
    I = torch.eye(N, dtype=torch.float64)
    for b in range(B):
        Fp = torch.linalg.pinv(F[b].T)                             # F^+ with functions as columns
        P = F[b].T @ Fp
        expected = U[b].T @ Fp + Fp.T @ U[b] @ (I - P)              # U F^+ + F^{+T} U^T (I - P)
        torch.testing.assert_close(fit.kernel()[b], expected)
    # a learned kernel equal to G on the complement completes G exactly: nothing else is missing
    torch.testing.assert_close(fit.kernel(G.expand(B, -1, -1)), G.expand(B, -1, -1))
    learned = fit.residual(f) @ G.T
    torch.testing.assert_close(fit.predict(f, learned), f @ G.T)


@pytest.mark.parametrize("mode", ["least_squares", "symmetric"])
def test_recombined_context_gives_the_same_operator(mode):
    """Any invertible recombination of a linear system's pairs is the same context."""
    G, F, U, f = linear_system(seed=1)
    mix = torch.randn(B, D, D, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    K = torch.randn(B, N, N, dtype=torch.float64)
    a, b = ContextFit(F, U, mode), ContextFit(mix @ F, mix @ U, mode)
    torch.testing.assert_close(a.kernel(K), b.kernel(K))
    torch.testing.assert_close(a.predict(f, a.residual(f) @ K.mT), b.predict(f, b.residual(f) @ K.mT))


def test_dependent_context_pairs_are_dropped_not_divided_by_zero():
    G, F, U, f = linear_system()
    F2, U2 = torch.cat([F, F[:, :2]], 1), torch.cat([U, U[:, :2]], 1)   # two repeated pairs
    for mode in ("least_squares", "symmetric"):
        torch.testing.assert_close(ContextFit(F2.float(), U2.float(), mode).predict(f.float()),
                                   ContextFit(F.float(), U.float(), mode).predict(f.float()),
                                   rtol=1e-4, atol=1e-4)


def test_errors():
    G, F, U, f = linear_system(symmetric=False, n_out=25)
    with pytest.raises(ValueError, match="maps a space to itself"):
        ContextFit(F, U, "symmetric")
    with pytest.raises(ValueError, match="mode must be one of"):
        ContextFit(F, U, "none")


def test_exact_under_mixed_precision():
    """Autocast must not touch the exact part: a bf16 basis is orthonormal to 1e-2 only."""
    G, F, U, f = linear_system()
    F, U, f = F.float(), U.float(), f.float()
    expected = ContextFit(F, U, "symmetric").predict(f)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fit = ContextFit(F, U, "symmetric")
        out = fit.predict(f, torch.zeros(B, 3, N, dtype=torch.bfloat16))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
