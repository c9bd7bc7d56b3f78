"""The local operator refined by its output error: the exact fit in the noise-free limit, and on
noisy contexts (Darcy solved by the package's verified solver, relative Gaussian noise on every
value, the boundary too) predictions closer to the clean responses than the noise itself."""
import numpy as np
import pytest

from nips_plugin.data.fields import gaussian_random_field, lognormal_field, random_load
from nips_plugin.data.noise import add_response_noise
from nips_plugin.data.solvers import darcy_operator, solve_darcy
from nips_plugin.interpret.greens import darcy_greens
from nips_plugin.baselines.local_operator import LocalOperatorFit, select_local_operator
from nips_plugin.baselines.output_error import laplacian_values


def relative(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def noisy_darcy(level, n=17, d=40, seed=11):
    """``d`` context pairs and 10 queries of one system; the noise as add_response_noise adds it."""
    b = lognormal_field(gaussian_random_field(n, 1, seed, length_scale=0.25), median=1.0, sigma=0.8)[0]
    f = random_load(n, d + 10, seed + 1, length_scale=0.2, offset_std=0.3).astype(np.float64)
    u = solve_darcy(b, f)
    rms = np.sqrt(np.mean(u**2, axis=(1, 2, 3), keepdims=True))
    noisy = u + level * rms * np.random.default_rng(seed).standard_normal(u.shape)
    return f, u, noisy


def mean_relative(pred, true):
    pred, true = pred.reshape(len(true), -1), true.reshape(len(true), -1)
    return np.mean(np.linalg.norm(pred - true, axis=1) / np.linalg.norm(true, axis=1))


def test_laplacian_start_is_the_solvers_operator():
    n = 9
    fit = LocalOperatorFit(*noisy_darcy(0.0, n=n, d=12)[:2], "star")
    rows, cols = fit.A.nonzero()
    A = darcy_operator(np.ones((n, n))) * (1 / (n - 1)) ** 2
    assert np.allclose(laplacian_values(rows, cols, (n, n), 1), np.asarray(A[rows, cols]).ravel())


def test_noise_free_limit_is_the_exact_fit():
    """Clean pairs: the equation-error fit has zero output error, and the refinement keeps it."""
    b = lognormal_field(gaussian_random_field(13, 1, 0, length_scale=0.3), median=2.0, sigma=1.0)[0]
    f = random_load(13, 20, 1, length_scale=0.2, offset_std=0.3).astype(np.float64)
    u = solve_darcy(b, f)
    refined, exact = (LocalOperatorFit(f, u, op) for op in ("star/output", "star"))
    assert relative(refined.A.toarray(), exact.A.toarray()) < 1e-5
    assert relative(refined.matrix(), darcy_greens(b)) < 1e-4


@pytest.mark.parametrize("level", [0.03, 0.1])
def test_noisy_context_predicts_below_the_noise(level):
    """At 3% and 10% noise (measured: 0.018 vs 0.030, 0.054 vs 0.099), against the clean query
    responses; the equation-error fit of the same pairs is worse than the noise many times over,
    in-context least squares about 6x / 4x."""
    d = 40
    f, clean, noisy = noisy_darcy(level)
    queries, truth = f[d:].reshape(10, -1), clean[d:]
    refined = mean_relative(LocalOperatorFit(f[:d], noisy[:d], "star/output").apply(queries), truth)
    noise = mean_relative(noisy[d:], truth)
    lstsq = mean_relative(queries @ np.linalg.pinv(f[:d].reshape(d, -1)) @ noisy[:d].reshape(d, -1), truth)
    equation = mean_relative(LocalOperatorFit(f[:d], noisy[:d], "star").apply(queries), truth)
    assert noise == pytest.approx(level, rel=0.1)
    assert refined < 0.7 * noise and refined < lstsq / 3 and equation > 3 * noise


def test_selection_keeps_the_output_error_fit_for_noisy_responses():
    d = 40
    f, _, noisy = noisy_darcy(0.03)
    assert select_local_operator(f[:d], noisy[:d])[0] is None           # not zero on the boundary
    fit, cv = select_local_operator(f[:d], noisy[:d], candidates=("star", "star/output"))
    assert fit.operator == "star/output"
    assert 0.03 < cv < 0.05          # held-out noisy responses: the noise plus the fit's error


def test_the_zoo_chooses_the_output_error_fit_for_noisy_data():
    from nips_plugin.data.tasks import TaskSet
    from nips_plugin.training.zoo import resolve_local_operator
    systems = [noisy_darcy(0.0, n=13, seed=seed) for seed in range(4)]
    tasks = TaskSet(np.stack([f for f, _, _ in systems]), np.stack([u for _, u, _ in systems]),
                    split=["train"] * 4)
    assert resolve_local_operator("auto", add_response_noise(tasks, 0.03), 40) == "star/output"
    assert resolve_local_operator("auto", tasks, 40) == "star"   # clean: the exact equation-error fit


def test_least_squares_predictor_predicts_with_the_fit_not_the_noisy_span():
    """``lstsq_local`` on noisy data: the output-error operator predicts the whole query (the
    exact fit on the context's span would pass its noise on), and its kernel is the same map."""
    from nips_plugin.baselines import LeastSquaresPredictor
    d = 40
    f, clean, noisy = noisy_darcy(0.03)
    truth = clean[d:]
    predictor = LeastSquaresPredictor(d, local_operator="star/output")
    pred = predictor.predict(f[:d], noisy[:d], f[d:])
    spanned = LeastSquaresPredictor(d, shared_operator_modes=12).predict(f[:d], noisy[:d], f[d:])
    assert mean_relative(pred, truth) < 0.7 * 0.03 < mean_relative(spanned, truth)
    M = predictor.kernel(f[:d], noisy[:d])
    assert relative(f[d:].reshape(10, -1) @ M.T, pred.reshape(10, -1)) < 1e-10



def test_auto_chooses_the_output_error_fit_for_noisy_data():
    """The zoo's choice of prior: the equation-error star on clean finite-difference data, the star
    refined by its output error at 3% noise."""
    from nips_plugin.data.noise import add_response_noise
    from nips_plugin.data.tasks import TaskSet
    from nips_plugin.training.zoo import resolve_local_operator, resolve_prior
    systems = [noisy_darcy(0.0, n=13, seed=seed) for seed in range(4)]
    tasks = TaskSet(np.stack([f for f, _, _ in systems]), np.stack([u for _, u, _ in systems]),
                    split=["train"] * 4)
    assert resolve_local_operator("auto", add_response_noise(tasks, 0.03), 40) == "star/output"
    assert resolve_prior("auto", tasks, 40) == "star"   # clean: the exact equation-error fit
