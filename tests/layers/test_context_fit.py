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


def smooth_symmetric_system(seed=0, n=64, d=16, m=8, rank=None):
    """A smoothing symmetric operator (inverse 1-D Laplacian, or its ``rank`` leading modes)
    probed by smooth inputs (sine series with amplitudes 1/k): nearly dependent contexts."""
    g = torch.Generator().manual_seed(seed)
    x = torch.arange(1, n + 1, dtype=torch.float64) / (n + 1)
    k = torch.arange(1, n + 1, dtype=torch.float64)
    modes = torch.sin(torch.pi * k[:, None] * x[None]) * (2 / (n + 1)) ** 0.5   # orthonormal, [k, x]
    eig = 1 / (torch.pi * k) ** 2                                           # of (-d^2/dx^2)^-1
    if rank is not None:
        eig = torch.where(k <= rank, eig, torch.zeros(()))
    G = modes.T @ (eig[:, None] * modes)
    amp = torch.randn(B, d + m, n, generator=g, dtype=torch.float64) / k
    f = amp @ modes
    return G, f[:, :d], f[:, :d] @ G, f[:, d:]


def relative_noise(u, level, seed):
    rms = u.square().mean(-1, keepdim=True).sqrt()
    return level * rms * torch.randn(u.shape, generator=torch.Generator().manual_seed(seed), dtype=u.dtype)


def test_denoised_fit_is_the_exact_fit_on_noise_free_data():
    G, F, U, f = smooth_symmetric_system()
    K = torch.randn(B, 64, 64, dtype=torch.float64)
    fit, exact = ContextFit(F, U, "symmetric"), ContextFit(F, U, "symmetric", denoise=False)
    assert fit.noise_variance.max() < 1e-25 * U.square().mean()
    assert (fit.weights > 1 - 1e-12).all() and (exact.weights == 1).all()
    learned = fit.residual(f) @ K.mT
    torch.testing.assert_close(fit.predict(f, learned), exact.predict(f, exact.residual(f) @ K.mT),
                               rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(fit.kernel(K), exact.kernel(K), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("level", [0.01, 0.1])
def test_denoised_fit_under_noise(level):
    """Noise of known size on a low-rank smoothing operator: the estimated noise level is
    the true one, the prediction is closer to the noise-free truth than the exact fit's,
    and the kernel is still what the forward map applies."""
    G, F, U, f = smooth_symmetric_system(seed=3, rank=10)
    noise = relative_noise(U, level, seed=4)
    fit, exact = ContextFit(F, U + noise, "symmetric"), ContextFit(F, U + noise, "symmetric", denoise=False)
    ratio = fit.noise_variance / noise.square().mean((-2, -1))
    assert ((0.5 < ratio) & (ratio < 2)).all()      # ~d degrees of freedom: inputs near one mode
    truth = f @ G
    err = lambda fit: ((fit.predict(f) - truth).norm(dim=-1) / truth.norm(dim=-1)).mean().item()  # noqa: E731
    assert err(fit) < {0.01: 0.98, 0.1: 0.6}[level] * err(exact)
    assert (fit.weights < 1).any() and (fit.weights >= 0).all()
    K = torch.randn(B, 64, 64, dtype=torch.float64)
    torch.testing.assert_close(fit.predict(f, fit.residual(f) @ K.mT), f @ fit.kernel(K).mT)


def test_noise_variance_estimate_is_unbiased():
    """White noise of variance sigma^2 on the responses of a symmetric operator: the mean of
    the estimate over many contexts is sigma^2 (E ||A - A^T||^2 = 2 (d-1) sigma^2 ||F||^2)."""
    g = torch.Generator().manual_seed(5)
    A = torch.randn(N, N, generator=g, dtype=torch.float64)
    F = torch.randn(200, D, N, generator=g, dtype=torch.float64)
    U = F @ (A @ A.T / N) + 0.1 * torch.randn(200, D, N, generator=g, dtype=torch.float64)
    assert ContextFit(F, U, "symmetric").noise_variance.mean().item() == pytest.approx(0.01, rel=0.05)
    assert (ContextFit(F, U, "least_squares").weights == 1).all()   # no estimate without symmetry
