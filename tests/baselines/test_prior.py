"""A classical prior fitted per context, and a learned model composed with it through the data
processor: the prior on the package's finite-difference Darcy data is the solver's Green's
operator, the composition is ``G f + model(residual context)`` and ``u = M f`` holds for it."""
import numpy as np
import pytest
import torch

from nips_plugin import NIPS, pack_context
from nips_plugin.baselines import ClassicalPrior, PriorResidualProcessor
from nips_plugin.data.fields import gaussian_random_field, lognormal_field, random_load
from nips_plugin.data.solvers import solve_darcy
from nips_plugin.interpret import InContextPredictor
from nips_plugin.interpret.greens import darcy_greens

N, D, Q = 9, 12, 3


def darcy_context(b, seed=0, noise=0.0):
    f = random_load(N, D + Q, seed, length_scale=0.2, offset_std=0.3).astype(np.float64)
    u = solve_darcy(b, f)
    u = u + noise * np.abs(u).max() * np.random.default_rng(seed).standard_normal(u.shape)
    return (torch.tensor(a[None]) for a in (f[:D], u[:D], f[D:], u[D:]))


def lognormal(seed=0):
    return lognormal_field(gaussian_random_field(N, 1, seed, length_scale=0.3), median=2.0, sigma=1.0)[0]


def matrix(prior, f, u):
    """The prior's operator matrix ``[N, N]`` for one context (rows for the identity's rows)."""
    eye = torch.eye(N * N, dtype=torch.float64).reshape(1, N * N, 1, N, N)
    return prior(f, u, eye)[0].reshape(N * N, N * N).T.numpy()


def test_local_prior_is_the_solvers_greens_operator():
    b = lognormal()
    f, u, fq, uq = darcy_context(b)
    G = darcy_greens(b)
    local = ClassicalPrior("star")
    assert np.linalg.norm(matrix(local, f, u) - G) / np.linalg.norm(G) < 1e-6
    assert (local(f, u, fq) - uq).norm() / uq.norm() < 1e-6
    # a noisy context is refused by the equation-error fit: the scaled Laplacian there
    f, noisy, fq, _ = darcy_context(b, noise=1e-3)
    torch.testing.assert_close(local(f, noisy, fq), ClassicalPrior("laplace")(f, noisy, fq))


def test_laplace_prior_scaled_by_the_context():
    """The context fixes the scale (a 10x stiffer system: predictions 10x smaller); close for a
    constant coefficient, a prior only for a heterogeneous one."""
    laplace = ClassicalPrior("laplace")
    f, u, fq, uq = darcy_context(np.full((N, N), 3.0))
    pred = laplace(f, u, fq)
    assert (pred - uq).norm() / uq.norm() < 0.05
    torch.testing.assert_close(laplace(f, u / 10, fq), pred / 10)
    f, u, fq, uq = darcy_context(lognormal())
    assert 0.05 < (laplace(f, u, fq) - uq).norm() / uq.norm() < 0.5


def test_prior_refuses_what_it_cannot_fit():
    with pytest.raises(ValueError, match="prior must be one of"):
        ClassicalPrior("cross")
    with pytest.raises(ValueError, match="in_components == out_components"):
        ClassicalPrior("star", 2, 1)


def processor(prior):
    proc = PriorResidualProcessor(D, Q, prior=prior)
    proc.sigma_f.fill_(2.5)
    proc.sigma_u.fill_(0.04)
    return proc


def test_processor_composes_prior_and_model():
    """Eval: ``G f_q + sigma_u model(f/sigma_f, (u - G f)/sigma_u, f_q/sigma_f)``; training: the same
    prediction in normalised units against the whole normalised target."""
    b = lognormal(1)
    f, u, fq, uq = darcy_context(b, seed=1)
    f, u, fq, uq = (t.float() for t in (f, u, fq, uq))
    model = NIPS(in_channels=2 * D + Q, out_channels=Q, n_pairs=D, n_layers=2, qk_channels=8, n_modes=(4, 4))
    proc, prior = processor("star"), ClassicalPrior("star")
    x, y = pack_context(f, u, fq), uq.flatten(1, 2)
    proc.eval()
    sample = proc.preprocess({"x": x.clone(), "y": y.clone()})
    with torch.no_grad():
        out, _ = proc.postprocess(model(**sample), sample)
        residual = pack_context(f / 2.5, (u - prior(f, u, f)) / 0.04, fq / 2.5)
        expected = prior(f, u, fq).flatten(1, 2) + 0.04 * model(residual)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6 * expected.abs().max().item())
    proc.train()
    sample = proc.preprocess({"x": x.clone(), "y": y.clone()})
    with torch.no_grad():
        train_out, sample = proc.postprocess(model(**sample), sample)
    torch.testing.assert_close(train_out * 0.04, out, rtol=1e-5, atol=1e-6 * out.abs().max().item())
    torch.testing.assert_close(sample["y"] * 0.04, y)
    # the learned part silenced: the prior's prediction, the solver's responses
    with torch.no_grad():
        model.kernel_key.weight.zero_()
        model.kernel_key.bias.zero_()
        proc.eval()
        sample = proc.preprocess({"x": x.clone(), "y": y.clone()})
        out, _ = proc.postprocess(model(**sample), sample)
    assert (out - y).norm() / y.norm() < 1e-5


def test_predictor_of_a_hybrid_is_its_kernel():
    """InContextPredictor with a prior processor: u = M f, the processor's prediction, and the
    solver's Green's operator once the learned part is silenced."""
    b = lognormal(2)
    f, u, fq, uq = darcy_context(b, seed=2)
    model = NIPS(in_channels=2 * D + Q, out_channels=Q, n_pairs=D, n_layers=2, qk_channels=8,
                 n_modes=(4, 4)).double()
    pred = InContextPredictor(model, processor("star").double())
    y = pred.predict(f, u, fq)
    M = pred.kernel(f, u)
    torch.testing.assert_close(torch.einsum("bij,bmj->bmi", M, fq.flatten(2)).reshape(y.shape), y,
                               rtol=1e-8, atol=1e-10 * y.abs().max().item())
    proc = pred.processor
    proc.eval()
    sample = proc.preprocess({"x": pack_context(f, u, fq), "y": uq.flatten(1, 2)})
    with torch.no_grad():
        out, _ = proc.postprocess(model(**sample), sample)
    torch.testing.assert_close(out, y.flatten(1, 2))
    with torch.no_grad():
        model.kernel_key.weight.zero_()
        model.kernel_key.bias.zero_()
    G = darcy_greens(b)
    assert np.linalg.norm(pred.kernel(f, u)[0].numpy() - G) / np.linalg.norm(G) < 1e-6
