"""The benchmark end to end on the tiny preset, and the command line's user errors."""
import json

import pytest

from nips_plugin.cli import main
from nips_plugin.training.benchmark import run_benchmark

KEYS = {"model", "params", "id_rel_l2", "ood_rel_l2", "ctx_rel_l2", "sec_per_epoch", "peak_mem_mb", "epochs"}


def test_benchmark_tiny_end_to_end(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["benchmark", "--preset", "tiny", "--models", "nips,linear_nao,fno", "--epochs", "2",
                 "--out", str(out), "--quiet"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["preset"] == "tiny" and results["device"] == "cpu"
    assert [r["model"] for r in results["rows"]] == ["nips", "linear_nao", "fno", "fno_oracle"]
    for row in results["rows"]:
        assert KEYS <= set(row)
        assert row["epochs"] == 2 and row["params"] > 0 and row["sec_per_epoch"] > 0
        assert 0 < row["id_rel_l2"] < 10 and 0 < row["ood_rel_l2"] < 10
        assert (row["ctx_rel_l2"] is None) == (row["model"] in ("fno", "fno_oracle"))
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
                          oracle=False, progress=False) for i in range(2)]
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
