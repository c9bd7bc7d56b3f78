"""The benchmark end to end on the tiny preset, and the command line's user errors."""
import json

import pytest

import numpy as np

from nips_plugin.cli import main
from nips_plugin.data.loaders import load_incontext
from nips_plugin.layers.context import unpack_context
from nips_plugin.evaluation.benchmark import run_benchmark
from nips_plugin.evaluation.protocol import default_sampling
from nips_plugin.training.run import load_data
from nips_plugin.training.trainer import RunTrainer

KEYS = {"model", "params", "id_rel_l2", "ood_rel_l2", "ctx_rel_l2", "train_seconds", "peak_mem_mb", "epochs"}


def test_benchmark_tiny_end_to_end(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["benchmark", "--preset", "tiny", "--models", "nips,nips_hybrid,linear_nao,fno,fno_oracle", "--epochs", "2",
                 "--out", str(out), "--quiet"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["preset"] == "tiny" and results["device"] == "cpu"
    names = [r["model"] for r in results["rows"]]
    assert names == ["nips", "nips_hybrid", "linear_nao", "fno", "fno_oracle", "lstsq", "lstsq_sym", "lstsq_laplace"]
    rows = {r["model"]: r for r in results["rows"]}
    # the no-learning rows on the same test draws, against a direct dense solve
    _, loaders, _ = load_incontext(load_data("tiny", progress=False), 6, 2, batch_size=4, seed=0)
    errors = []
    for batch in loaders["id"]:
        f, u, fq = (t.double().flatten(2).numpy() for t in unpack_context(batch["x"], 6))
        for b in range(len(f)):
            pred = np.linalg.lstsq(f[b].T, fq[b].T, rcond=None)[0].T @ u[b]
            y = batch["y"][b].double().flatten(1).numpy()
            errors += list(np.linalg.norm(pred - y, axis=1) / np.linalg.norm(y, axis=1))
    assert rows["lstsq"]["id_rel_l2"] == pytest.approx(np.mean(errors), rel=1e-6)
    assert rows["lstsq_sym"]["id_rel_l2"] < rows["lstsq"]["id_rel_l2"]   # Darcy: symmetric operators
    # the inverse-Laplacian prior on the complement (measured 0.21 against 0.66)
    assert rows["lstsq_laplace"]["id_rel_l2"] < 0.5 * rows["lstsq_sym"]["id_rel_l2"]
    assert rows["nips"]["vs_lstsq"] == pytest.approx(rows["nips"]["id_rel_l2"] / np.mean(errors), rel=1e-6)
    floor = min(rows[name]["id_rel_l2"] for name in ("lstsq", "lstsq_sym", "lstsq_laplace"))
    assert results["best_floor"] == "lstsq_laplace"
    assert rows["nips"]["vs_floor"] == pytest.approx(rows["nips"]["id_rel_l2"] / floor, rel=1e-9)
    # the hybrid row corrects the classical prior chosen from the training data, saved with its run
    config = json.loads((out / "nips_hybrid" / "config.json").read_text())
    assert config["prior"] == (results["local_operator"] or "laplace") and config["model"]["context_fit"] != "none"
    assert json.loads((out / "nips" / "config.json").read_text())["prior"] is None
    from nips_plugin.interpret import InContextPredictor
    hybrid = InContextPredictor.from_run(out / "nips_hybrid")      # loaded back with its prior
    assert hybrid.processor.prior.name == config["prior"]
    for row in results["rows"]:
        if row["model"].startswith("lstsq"):
            assert row["params"] == 0 and row["ctx_rel_l2"] < 1e-12 and 0 < row["kernel_rel_err"] < 2
            continue
        assert KEYS <= set(row)
        assert row["epochs"] == 2 and row["params"] > 0 and row["train_seconds"] > 0
        assert 0 < row["id_rel_l2"] < 10 and 0 < row["ood_rel_l2"] < 10
        assert (row["ctx_rel_l2"] is None) == (row["model"] in ("fno", "fno_oracle", "nips_hybrid"))
    for row in results["rows"]:
        # zero-shot super-resolution: the same unseen systems on a 13x13 grid
        assert 0 < row["superres_rel_l2"]["13"] < 10
    for name in ("nips", "fno", "fno_oracle"):
        for f in ("config.json", "data_processor.pt", "model_state_dict.pt", "history.json"):
            assert (out / name / f).exists()
    for f in ("results.md", "learning_curves.png", "predictions.png"):
        assert (out / f).stat().st_size > 0
    assert "| nips |" in capsys.readouterr().out


def test_same_seed_same_numbers(tmp_path):
    runs = [run_benchmark(preset="tiny", models=("nips",), epochs=1, out=tmp_path / str(i),
                          progress=False) for i in range(2)]
    # exactly the models asked for (no oracle unless named), then the no-learning rows
    assert [r["model"] for r in runs[0]["rows"]] == ["nips", "lstsq", "lstsq_sym", "lstsq_laplace"]
    a, b = (r["rows"][0] for r in runs)
    assert a["id_rel_l2"] == b["id_rel_l2"] and a["ctx_rel_l2"] == b["ctx_rel_l2"]


@pytest.mark.parametrize("args,message", [
    (["--preset", "nope"], "unknown preset"),
    (["--models", "nips,gpt"], "unknown model"),
    (["--data", "missing.h5"], "task file not found"),
])
def test_user_errors_are_one_line(tmp_path, capsys, args, message):
    assert main(["benchmark", "--out", str(tmp_path / "o"), "--quiet", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_existing_output_needs_force(tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert main(["benchmark", "--preset", "tiny", "--out", str(out), "--quiet"]) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "keep.txt").exists()


def test_default_sampling_fits_small_files():
    assert default_sampling(100) == (40, 10)
    assert default_sampling(20) == (16, 4)
    assert default_sampling(20, n_pairs=10) == (10, 10)
    assert default_sampling(3) == (2, 1)


def test_interrupted_benchmark_resumes(tmp_path, capsys, monkeypatch):
    """Interrupted in its second model: --resume keeps the finished model, continues the
    interrupted one from its last epoch, and gives the uninterrupted numbers."""
    args = ["benchmark", "--preset", "tiny", "--models", "nips,linear_nao", "--epochs", "2", "--quiet"]
    assert main(args + ["--out", str(tmp_path / "straight")]) == 0
    original = RunTrainer.on_epoch_start
    calls = []

    def interrupt_in_second_model(self, epoch):
        calls.append(epoch)
        if len(calls) == 4:   # nips: epochs 0, 1; linear_nao: epoch 0, then stop before epoch 1
            raise KeyboardInterrupt
        original(self, epoch)

    monkeypatch.setattr(RunTrainer, "on_epoch_start", interrupt_in_second_model)
    cut = str(tmp_path / "cut")
    assert main(args + ["--out", cut]) == 130
    assert "--resume" in capsys.readouterr().err
    monkeypatch.setattr(RunTrainer, "on_epoch_start", original)
    assert main(args + ["--out", cut]) == 2                     # refuses to overwrite
    assert main(args + ["--out", cut, "--resume"]) == 0
    straight, resumed = (json.loads((tmp_path / name / "results.json").read_text())["rows"]
                         for name in ("straight", "cut"))
    for a, b in zip(straight, resumed):
        assert a["model"] == b["model"] and a.get("epochs") == b.get("epochs")
        assert a["id_rel_l2"] == pytest.approx(b["id_rel_l2"], rel=1e-5)


def test_task_file_with_few_pairs(tmp_path):
    """A file of 10 pairs per system runs with d and q chosen for it (d = 8, q = 2); 8 pairs
    leave the 5-point star (5 unknowns per node) as the only local operator they determine,
    and the package's finite-difference Darcy data satisfy it exactly."""
    from nips_plugin.data import save_tasks
    tasks = load_data("tiny", progress=False)
    path = save_tasks(tmp_path / "few.h5", tasks.f[:, :10], tasks.u[:, :10], params=tasks.params,
                      split=tasks.split, **tasks.attrs)
    results = run_benchmark(data=str(path), models=("nips",), epochs=1, out=tmp_path / "b",
                            progress=False)
    assert (results["settings"]["n_pairs"], results["settings"]["n_queries"]) == (8, 2)
    rows = {r["model"]: r for r in results["rows"]}
    assert list(rows) == ["nips", "lstsq", "lstsq_sym", "lstsq_laplace", "lstsq_local"]
    assert results["local_operator"] == "star"
    assert all(0 < r["id_rel_l2"] < 10 for r in results["rows"])
    assert rows["lstsq_local"]["id_rel_l2"] < 1e-6 < rows["lstsq_laplace"]["id_rel_l2"]


def test_epochs_per_model():
    from nips_plugin.evaluation.protocol import PRESET_SETTINGS, epochs_for
    darcy = PRESET_SETTINGS["darcy"]
    assert epochs_for(darcy, "nips") == darcy["epochs"]["nips"]
    assert epochs_for(darcy, "new_model") == sorted(darcy["epochs"].values())[len(darcy["epochs"]) // 2]
    assert epochs_for({"epochs": 3}, "nips") == 3


def test_seeds_report_mean_and_spread(tmp_path):
    """--seeds: every seed is the single-seed benchmark of that seed; rows hold the mean and the
    sample standard deviation over the seeds."""
    results = run_benchmark(preset="tiny", models=("nips", "nips_enhanced"), epochs=1, seeds=(0, 1),
                            out=tmp_path / "s", progress=False)
    single = run_benchmark(preset="tiny", models=("nips", "nips_enhanced"), epochs=1, seed=1,
                           out=tmp_path / "one", progress=False)
    assert results["seeds"] == [0, 1]
    assert [r["model"] for r in results["rows"]] == ["nips", "nips_enhanced", "lstsq", "lstsq_sym", "lstsq_laplace"]
    per_seed = {run["seed"]: {r["model"]: r for r in run["rows"]} for run in results["per_seed"]}
    for a, b in zip(per_seed[1].values(), single["rows"]):
        assert a["id_rel_l2"] == pytest.approx(b["id_rel_l2"], rel=1e-6)
    for row in results["rows"]:
        values = [per_seed[s][row["model"]]["id_rel_l2"] for s in (0, 1)]
        assert row["id_rel_l2"] == pytest.approx(np.mean(values))
        assert row["id_rel_l2_std"] == pytest.approx(np.std(values, ddof=1))
        assert row["id_rel_l2_std"] > 0
    table = (tmp_path / "s" / "results.md").read_text()
    assert "mean ± std" in table and " ± " in table.split("| nips |")[1].splitlines()[0]
    assert "Papers' models" not in table  # no NAO row to compare nips with
    for s in (0, 1):
        assert (tmp_path / "s" / f"seed{s}" / "nips" / "history.json").exists()


def test_budget_seconds_sets_epochs_from_a_calibration(tmp_path):
    from nips_plugin.evaluation.protocol import PRESET_SETTINGS, calibrate_epochs, complete_settings
    tasks = load_data("tiny", progress=False)
    settings, _ = complete_settings(PRESET_SETTINGS["tiny"], tasks)
    epochs, seconds = calibrate_epochs("nips", tasks, settings, budget_seconds=1.0)
    assert seconds > 0 and epochs == max(1, round(1.0 / seconds))
    assert calibrate_epochs("nips", tasks, settings, budget_seconds=1e-9)[0] == 1
    results = run_benchmark(preset="tiny", models=("nips", "fno"), budget_seconds=0.5, seeds=(0, 1),
                            out=tmp_path / "b", progress=False)
    # calibrated on the first seed, the same epochs for every seed
    epochs = results["settings"]["epochs"]
    assert set(epochs) == {"nips", "fno"} and all(e >= 1 for e in epochs.values())
    for run in results["per_seed"]:
        assert {r["model"]: r["epochs"] for r in run["rows"] if r["epochs"]} == epochs
    assert results["calibrated_here"] and "on this machine" in (tmp_path / "b" / "results.md").read_text()


def test_failing_optional_step_is_a_warning(tmp_path, capsys, monkeypatch):
    import nips_plugin.evaluation.benchmark as benchmark

    def broken(*args, **kwargs):
        raise RuntimeError("grid not supported\nsecond line")

    monkeypatch.setattr(benchmark, "superresolution_errors", broken)
    results = run_benchmark(preset="tiny", models=("nips",), epochs=1, out=tmp_path / "b", progress=False)
    err = capsys.readouterr().err
    assert "warning: super-resolution failed (RuntimeError: grid not supported)" in err
    assert "second line" not in err
    saved = json.loads((tmp_path / "b" / "results.json").read_text())
    assert saved["finished"] and saved["rows"][0]["id_rel_l2"] == results["rows"][0]["id_rel_l2"]
    assert "superres_rel_l2" not in saved["rows"][0]


def test_3d_task_file_with_hidden_fields_finishes_with_a_table(tmp_path):
    """Kernels and hidden fields are 2-D only: a 3-D file says so in one line and keeps its table."""
    from nips_plugin.data import save_tasks
    rng = np.random.default_rng(0)
    f = rng.standard_normal((6, 12, 1, 5, 5, 5)).astype(np.float32)
    u = (0.1 * f + 0.01 * rng.standard_normal(f.shape)).astype(np.float32)
    path = save_tasks(tmp_path / "cube.h5", f, u, params={"permeability": np.exp(rng.standard_normal((6, 5, 5, 5)))},
                      split=np.array(["train"] * 4 + ["test"] * 2), pde="darcy")
    results = run_benchmark(data=str(path), models=("nips",), epochs=1, out=tmp_path / "b", progress=False)
    assert results["finished"] and "not available for 3-D grids" in results["interpretation"]
    assert "not available for 3-D grids" in (tmp_path / "b" / "results.md").read_text()
    # random data: not symmetric
    assert [r["model"] for r in results["rows"]] == ["nips", "lstsq", "lstsq_laplace"]


def test_benchmark_with_noise_reports_errors_against_the_clean_responses(tmp_path):
    from nips_plugin.data.noise import add_response_noise
    results = run_benchmark(preset="tiny", models=("nips",), epochs=1, out=tmp_path / "b",
                            progress=False, noise=0.05)
    clean = load_data("tiny", progress=False)
    noisy = add_response_noise(clean, 0.05, seed=0)
    (_, noisy_loaders, _), (_, clean_loaders, _) = (load_incontext(t, 6, 2, batch_size=4, seed=0)
                                                    for t in (noisy, clean))
    measured, lstsq, lstsq_noisy = [], [], []
    for a, b in zip(noisy_loaders["id"], clean_loaders["id"]):
        # the same draws: same systems and inputs (x's f channels), responses differing by the noise
        assert (a["system"] == b["system"]).all()
        f, u, fq = (t.double().flatten(2).numpy() for t in unpack_context(a["x"], 6))
        f_clean, _, fq_clean = (t.double().flatten(2).numpy() for t in unpack_context(b["x"], 6))
        np.testing.assert_array_equal(f, f_clean)
        np.testing.assert_array_equal(fq, fq_clean)
        y_noisy, y = a["y"].double().flatten(2).numpy(), b["y"].double().flatten(2).numpy()   # [B, q, N]
        measured += list((np.linalg.norm(y_noisy - y, axis=-1) / np.linalg.norm(y, axis=-1)).ravel())
        for k in range(len(f)):    # least squares from the noisy context, against the clean responses
            pred = np.linalg.lstsq(f[k].T, fq[k].T, rcond=None)[0].T @ u[k]
            lstsq += list(np.linalg.norm(pred - y[k], axis=-1) / np.linalg.norm(y[k], axis=-1))
            lstsq_noisy += list(np.linalg.norm(pred - y_noisy[k], axis=-1) / np.linalg.norm(y_noisy[k], axis=-1))
    assert results["noise_level"] == 0.05
    assert results["noise_rel_l2"] == pytest.approx(np.mean(measured), rel=1e-5)
    assert results["noise_rel_l2"] == pytest.approx(0.05, rel=0.25)
    rows = {r["model"]: r for r in results["rows"]}
    assert rows["lstsq"]["clean_rel_l2"] == pytest.approx(np.mean(lstsq), rel=1e-6)
    assert rows["lstsq"]["id_rel_l2"] == pytest.approx(np.mean(lstsq_noisy), rel=1e-6)   # noisy targets
    assert abs(np.mean(lstsq) / np.mean(lstsq_noisy) - 1) > 1e-5                      # which the checks tell apart
    assert all(0 < r["clean_rel_l2"] < 10 for r in results["rows"])
    assert "unseen vs clean" in (tmp_path / "b" / "results.md").read_text()
