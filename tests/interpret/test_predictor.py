"""InContextPredictor in physical units, run folders, the run report and figures, kernel metrics."""

import json

import numpy as np
import pytest
import torch

from nips_plugin.data import load_tasks, save_tasks
from nips_plugin.data.families import make_darcy_tasks, make_elasticity_tasks
from nips_plugin.data.noise import add_response_noise
from nips_plugin.data.loaders import InContextDataProcessor
from nips_plugin.interpret import (InContextPredictor, LeastSquaresPredictor, interpret_run, kernel_metrics,
                                   log_correlation, plot_interpretation)
from nips_plugin.interpret.figures import run_tasks
from nips_plugin.layers.context import ContextLayout, pack_context, unpack_responses
from nips_plugin.training.zoo import build_model, model_config

D, Q, N = 4, 3, 9


def processor(c, sigma_f, sigma_u):
    p = InContextDataProcessor(D, Q, c, c)
    p.sigma_f.copy_(torch.tensor(sigma_f))
    p.sigma_u.copy_(torch.tensor(sigma_u))
    return p


def predictor(name="nips", c=1):
    torch.manual_seed(0)
    model = build_model(name, ContextLayout(D, c, c, Q), 2)
    return InContextPredictor(model, processor(c, [2.5, 0.5][:c], [0.01, 3.0][:c]))


def fields(c=1, batch=(), seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*batch, k, c, N, N, generator=g, dtype=torch.float64) for k in (D, D, Q)]


@pytest.mark.parametrize("name", ["nips", "nao", "linear_nao"])
@pytest.mark.parametrize("c", [1, 2])
def test_predict_is_the_physical_kernel_and_the_processor_path(name, c):
    pred = predictor(name, c)
    f, u, fq = fields(c)
    M = pred.kernel(f.numpy(), u.numpy())
    y = pred.predict(f.numpy(), u.numpy(), fq.numpy())
    assert isinstance(M, np.ndarray) and M.shape == (c * N * N,) * 2 and M.dtype == np.float64
    assert y.shape == (Q, c, N, N)
    via_kernel = (fq.numpy().reshape(Q, -1) @ M.T).reshape(y.shape)
    np.testing.assert_allclose(y, via_kernel, rtol=1e-4, atol=1e-5 * np.abs(y).max())

    # the data processor's own normalise -> model -> de-normalise path
    proc = pred.processor
    proc.eval()  # de-normalises the output
    batch = proc.preprocess({"x": pack_context(f[None], u[None], fq[None]).float(),
                             "y": torch.zeros(1, Q * c, N, N)})
    out, _ = proc.postprocess(pred.model(batch["x"]), batch)
    np.testing.assert_allclose(y, unpack_responses(out, c)[0].detach().numpy(), rtol=1e-4,
                               atol=1e-5 * np.abs(y).max())


def test_batches_and_array_kinds():
    pred = predictor("nips", 2)
    f, u, fq = fields(2, batch=(2,))
    M = pred.kernel(f, u)
    assert torch.is_tensor(M) and M.shape == (2, 2 * N * N, 2 * N * N) and M.dtype == torch.float64
    # float32 model: batching only changes the summation order
    np.testing.assert_allclose(M[1].numpy(), pred.kernel(f[1], u[1]).numpy(), rtol=1e-4, atol=1e-6 * M.abs().max())
    y = pred.predict(f.float(), u, fq.float())
    assert torch.is_tensor(y) and y.shape == (2, Q, 2, N, N) and y.dtype == torch.float32
    np.testing.assert_allclose(y[0].numpy(), pred.predict(f[0], u[0], fq[0]).float().numpy(), rtol=1e-4,
                               atol=1e-6 * y.abs().max())


def test_bad_input():
    pred = predictor()
    f, u, fq = fields()
    with pytest.raises(ValueError, match="d = 4 pairs"):
        pred.kernel(f[:3], u[:3])
    with pytest.raises(ValueError, match="2 components.*expects 1"):
        pred.kernel(torch.cat([f, f], 1), u)
    with pytest.raises(ValueError, match=r"\[n, c, \*grid\] or \[B, n, c, \*grid\] with a 2-D grid"):
        pred.kernel(f[..., 0], u[..., 0])
    bad = u.clone()
    bad[0, 0, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        pred.predict(f, bad, fq)
    with pytest.raises(ValueError, match="grid of f_ctx"):
        pred.kernel(f, u[..., :-1])
    with pytest.raises(ValueError, match="batching"):
        pred.predict(f, u, fq[None])
    with pytest.raises(ValueError, match="grid of f_ctx"):
        pred.predict(f, u, fq[..., :-1, :])
    with pytest.raises(TypeError, match="numpy array or torch tensor"):
        pred.kernel(f.tolist(), u)
    fno = build_model("fno", ContextLayout(D, 1, 1, Q), 2)
    with pytest.raises(TypeError, match="not an in-context operator"):
        InContextPredictor(fno, pred.processor)
    with pytest.raises(ValueError, match="does not match the model"):
        InContextPredictor(pred.model, processor(2, [1.0, 1.0], [1.0, 1.0]))


def tiny_tasks(path, make=make_darcy_tasks):
    return make(n=N, n_pairs=8, n_train=3, n_test=2, n_ood=1, cache_dir=path, progress=False)


def write_run(path, name, tasks):
    """A run folder as train_run writes it, untrained (fast)."""
    c = tasks.in_components
    layout = ContextLayout(D, c, c, Q)
    proc = InContextDataProcessor(D, Q, c, c).fit(tasks, tasks.indices("train"))
    model = build_model(name, layout, 2)
    path.mkdir()
    model.save_checkpoint(path, "model")
    proc.save(path / "data_processor.pt")
    config = {"name": name, "model": dict(model_config(name, layout, 2)),
              "data": {"n_pairs": D, "n_queries": Q, "attrs": tasks.attrs}}
    (path / "config.json").write_text(json.dumps(config))
    return model, proc


def test_from_run_interpret_run_and_run_tasks(tmp_path, monkeypatch):
    tasks = tiny_tasks(tmp_path / "cache")
    model, proc = write_run(tmp_path / "nips", "nips", tasks)
    pred = InContextPredictor.from_run(tmp_path / "nips")
    assert pred.config["name"] == "nips"
    f, u, _ = fields()
    np.testing.assert_array_equal(pred.kernel(f, u), InContextPredictor(model, proc).kernel(f, u))

    report = interpret_run(tmp_path / "nips", system=1, tasks=tasks)
    assert report["system"] == tasks.indices("test")[1]
    for key in ("kernel_rel_err", "kernel_rel_err_span", "recovery_rel_err", "phase_accuracy"):
        assert np.isfinite(report[key])
    assert set(report["classical_rel_err"]) == {0.0, 0.01, 0.1}
    assert report["classical_rel_err"][0.0] < 0.1
    assert all(p.exists() and p.parent == tmp_path / "nips" / "interpret" for p in report["figures"].values())
    assert json.loads(report["json"].read_text())["system"] == report["system"]
    with pytest.raises(ValueError, match=r"system must be in \[0, 2\)"):
        interpret_run(tmp_path / "nips", system=2, tasks=tasks)

    # without tasks, the run's generator is called again with the recorded parameters
    monkeypatch.setenv("NIPS_PLUGIN_CACHE", str(tmp_path / "cache"))
    config = json.loads((tmp_path / "nips" / "config.json").read_text())
    np.testing.assert_array_equal(run_tasks(config).f, tasks.f)
    config["data"]["attrs"].pop("generator")
    with pytest.raises(ValueError, match="pass tasks="):
        run_tasks(config)

    # a run on a task file reads that file again, with the benchmark's noise added again
    save_tasks(tmp_path / "own.h5", tasks.f, tasks.u, tasks.params, tasks.split, **config["data"]["attrs"])
    noisy = add_response_noise(load_tasks(tmp_path / "own.h5"), 0.03, seed=5)
    config["data"].update(path=noisy.source, attrs=noisy.attrs)
    again = run_tasks(config)
    np.testing.assert_array_equal(again.u, noisy.u)
    assert not np.array_equal(again.u, tasks.u)
    (tmp_path / "own.h5").unlink()
    with pytest.raises(ValueError, match="is gone"):
        run_tasks(config)

    write_run(tmp_path / "fno", "fno", tasks)
    with pytest.raises(ValueError, match="'fno', which builds no kernel"):
        InContextPredictor.from_run(tmp_path / "fno")


@pytest.mark.parametrize("make", [make_darcy_tasks, make_elasticity_tasks])
def test_kernel_metrics_on_a_model(tmp_path, make):
    tasks = tiny_tasks(tmp_path, make)
    model, proc = write_run(tmp_path / "run", "linear_nao", tasks)
    test = tasks.indices("test")
    metrics = kernel_metrics(InContextPredictor(model, proc), tasks, test, n_pairs=D, noise_levels=(0.0,))
    c = tasks.in_components
    assert metrics["n_systems"] == 2 and 1 <= metrics["span_rank"] <= c * N * N
    assert [p["system"] for p in metrics["per_system"]] == list(test)
    assert np.isclose(metrics["kernel_rel_err"], np.mean([p["kernel_rel_err"] for p in metrics["per_system"]]))
    # 4 pairs on 9x9 nodes; the digit modulus is only fixed up to fields with zero cell means
    assert set(metrics["classical_rel_err"]) == {0.0} and metrics["classical_rel_err"][0.0] < 0.25
    assert ("phase_accuracy" in metrics) == (c == 1)  # two-phase permeabilities, continuous digits
    with pytest.raises(ValueError, match="contexts of 4 pairs"):
        kernel_metrics(InContextPredictor(model, proc), tasks, test, n_pairs=5)


def test_plot_interpretation_two_components(tmp_path):
    rng = np.random.default_rng(0)
    G = rng.standard_normal((2 * N * N, 2 * N * N))
    true = rng.random((N, N)) + 1
    paths = plot_interpretation(G + 0.1, G, true, true * 1.1, {0.01: true * 0.9}, tmp_path / "fig")
    assert sorted(paths) == ["fields", "kernel_rows", "spectrum"]
    assert all(p.stat().st_size > 0 for p in paths.values())


@pytest.mark.parametrize("mode", ["least_squares", "symmetric"])
def test_least_squares_predictor(tmp_path, mode):
    """The no-learning floor: a U for the query f = a F + r, its kernel U F^+ (numpy's pinv)."""
    tasks = tiny_tasks(tmp_path, make_darcy_tasks)
    ls = LeastSquaresPredictor(D, mode=mode)
    f, u, fq = tasks.f[0, :D], tasks.u[0, :D], tasks.f[0, D:D + 2]
    M = ls.kernel(f, u)
    F, U = f.reshape(D, -1).astype(np.float64), u.reshape(D, -1).astype(np.float64)
    expected = U.T @ np.linalg.pinv(F.T)
    if mode == "symmetric":
        Fp = np.linalg.pinv(F.T)
        expected = expected + Fp.T @ U @ (np.eye(F.shape[1]) - F.T @ Fp)
    np.testing.assert_allclose(M, expected, rtol=1e-6, atol=1e-6 * np.abs(expected).max())
    assert M.dtype == np.float32 and M.shape == (N * N, N * N)
    pred = ls.predict(f, u, fq)
    np.testing.assert_allclose(pred.reshape(2, -1), fq.reshape(2, -1) @ M.T, rtol=1e-4,
                               atol=1e-5 * np.abs(pred).max())
    metrics = kernel_metrics(ls, tasks, tasks.indices("test"), n_pairs=D, noise_levels=())
    assert metrics["context_misfit"] < 1e-5 and 0 < metrics["kernel_rel_err"] < 1.5
    assert metrics["held_out_misfit"] > 10 * metrics["context_misfit"]   # inexact beyond its context
    with pytest.raises(ValueError, match="d = 4 pairs"):
        ls.kernel(f[:3], u[:3])


def test_log_correlation():
    true = np.exp(np.random.default_rng(0).standard_normal((5, 5)))
    assert log_correlation(2 * true, true) == pytest.approx(1.0)
    assert log_correlation(1 / true, true) == pytest.approx(-1.0)
    # non-positive estimates are clipped, not NaN
    assert np.isfinite(log_correlation(true - true.mean(), true))


def test_least_squares_predictor_with_the_laplacian_prior(tmp_path):
    """lstsq_laplace: the symmetric fit plus the context-scaled inverse Dirichlet Laplacian, its
    kernel consistent with its predictions; on a constant-coefficient Darcy system (G = c
    Laplacian^-1 on the resolved sines) it beats the symmetric completion by far."""
    from nips_plugin.data.solvers import solve_darcy
    ls = LeastSquaresPredictor(D, mode="symmetric", shared_operator_modes=12)
    plain = LeastSquaresPredictor(D, mode="symmetric")
    rng = np.random.default_rng(0)
    n = 15
    f = rng.standard_normal((D + 3, 1, n, n)).astype(np.float32)
    u = np.stack([solve_darcy(np.full((n, n), 3.0), fi[0])[None] for fi in f]).astype(np.float32)
    M = ls.kernel(f[:D], u[:D])
    pred = ls.predict(f[:D], u[:D], f[D:])
    np.testing.assert_allclose(pred.reshape(3, -1), f[D:].reshape(3, -1) @ M.T, rtol=1e-4,
                               atol=1e-5 * np.abs(pred).max())
    err = lambda p: np.linalg.norm(p - u[D:]) / np.linalg.norm(u[D:])  # noqa: E731
    assert err(pred) < 0.25 * err(plain.predict(f[:D], u[:D], f[D:]))
