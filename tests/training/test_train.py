"""`nips-plugin train`: configs, overrides, interruption and resume, and 2-process DDP."""
import json
import os
import subprocess
import sys

import pytest
import torch

from nips_plugin.cli import main
from nips_plugin.training.trainer import RunTrainer


def history(run_dir):
    return json.loads((run_dir / "history.json").read_text())


def test_train_with_overrides(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--config", "tiny", "--model", "linear_nao", "--model.n_layers", "2",
                 "--epochs", "2", "--out", str(out), "--quiet"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["model_arch"] == "linear_nao" and config["model"]["n_layers"] == 2
    assert [h["epoch"] for h in history(out)] == [1, 2]


def test_interrupt_and_resume_gives_the_same_run(tmp_path, monkeypatch):
    args = ["train", "--config", "tiny", "--epochs", "3", "--quiet"]
    assert main(args + ["--out", str(tmp_path / "straight")]) == 0

    original = RunTrainer.on_epoch_start

    def interrupt_at_third_epoch(self, epoch):
        if epoch == 2:
            raise KeyboardInterrupt
        original(self, epoch)

    monkeypatch.setattr(RunTrainer, "on_epoch_start", interrupt_at_third_epoch)
    assert main(args + ["--out", str(tmp_path / "cut")]) == 130
    assert [h["epoch"] for h in history(tmp_path / "cut")] == [1, 2]
    monkeypatch.setattr(RunTrainer, "on_epoch_start", original)
    assert main(args + ["--out", str(tmp_path / "cut"), "--resume"]) == 0

    straight, resumed = history(tmp_path / "straight"), history(tmp_path / "cut")
    assert [h["epoch"] for h in resumed] == [1, 2, 3]
    for a, b in zip(straight, resumed):
        assert a["id_rel_l2"] == pytest.approx(b["id_rel_l2"], rel=1e-5)


def test_resume_fno_checkpoint(tmp_path):
    """FNO's checkpoint metadata holds classes; resuming must still work."""
    out = tmp_path / "fno"
    assert main(["train", "--config", "tiny", "--model", "fno", "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    assert main(["train", "--config", "tiny", "--model", "fno", "--epochs", "2", "--out", str(out),
                 "--quiet", "--resume"]) == 0
    assert [h["epoch"] for h in history(out)] == [1, 2]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")
def test_torchrun_two_cpu_processes(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
           "-m", "nips_plugin", "train", "--config", "tiny", "--epochs", "2", "--out", str(out), "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [h["epoch"] for h in history(out)] == [1, 2]
    assert proc.stdout.count("run folder") == 1  # only rank 0 reports


def test_a_run_on_a_task_file_is_interpreted_from_its_folder(tmp_path, capsys):
    from nips_plugin.data import save_tasks
    from nips_plugin.training.run import load_data
    tasks = load_data("tiny", progress=False)
    path = tmp_path / "own.h5"
    save_tasks(path, tasks.f, tasks.u, tasks.params, tasks.split, **tasks.attrs)
    out = tmp_path / "run"
    assert main(["train", "--config", "tiny", "--model", "nips", "--data.path", str(path), "--epochs", "1",
                 "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "config.json").read_text())["data"]["path"] == str(path.resolve())
    assert main(["interpret", "--run", str(out)]) == 0
    report = json.loads((out / "interpret" / "interpret.json").read_text())
    assert 0 < report["kernel_rel_err"] < 1
    path.unlink()
    assert main(["interpret", "--run", str(out)]) == 2
    assert "is gone" in capsys.readouterr().err
