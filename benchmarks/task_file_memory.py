"""Peak resident memory and training speed on task files of growing size and grid.

    python benchmarks/task_file_memory.py [--files 0.1:41,1:41,4:64] [--pairs 100]
                                          [--dir DIR] [--eager-too] [--keep]

For each ``SIZE_GB:GRID`` a task file of about ``SIZE_GB`` GB is written system by
system (:class:`nips_plugin.data.TaskWriter`, one chunk per system; memory stays at
one system): ``P`` pairs per system on a ``GRID x GRID`` node grid, as many systems
as the size needs (default split: the last 10% are test systems). The data are
synthetic and linear: ``f`` white noise, ``u = a_s * gaussian_filter(f)`` with a
random ``a_s`` per system; their values do not change time or memory.

Then one epoch of

    nips-plugin train --config darcy --model nips --data.path FILE
                      --data.draws_per_system 1 --epochs 1

runs in a child process (one thread: ``OMP_NUM_THREADS=1``), and the table gives the
child's peak resident set (``ru_maxrss`` of ``os.wait4``, kernel high-water mark, so
short peaks count), the load mode :func:`nips_plugin.data.load_tasks` chose (whole
file up to ``EAGER_MAX_BYTES``, lazily above) and the training samples per second
of the epoch (``history.json``'s ``seconds``: the training loop, without the
evaluation). ``--eager-too`` runs each file twice, forced whole and forced lazy, to
compare both modes on the same data. The peak includes importing torch,
neuralop and the package (printed first, measured the same way). Files are deleted
after their run unless ``--keep``.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from nips_plugin.data import TaskWriter  # noqa: E402
from nips_plugin.data.tasks import EAGER_MAX_BYTES  # noqa: E402

#: the child: set the whole-file threshold (bytes, or "auto"), then run the command line
CHILD = ("import sys, nips_plugin.data.tasks as t\n"
         "if sys.argv[1] != 'auto': t.EAGER_MAX_BYTES = float(sys.argv[1])\n"
         "from nips_plugin.cli import main\n"
         "sys.exit(main(sys.argv[2:]))\n")
IMPORT_ONLY = "import torch, neuralop, nips_plugin.cli, nips_plugin.training.run"


def write_file(path, size_gb, grid, n_pairs, seed=0):
    """A synthetic task file of about ``size_gb`` GB; returns its number of systems."""
    bytes_per_system = 2 * n_pairs * grid * grid * 4
    n_systems = max(2, round(size_gb * 1e9 / bytes_per_system))
    rng = np.random.default_rng(seed)
    with TaskWriter(path, pde="synthetic_linear", domain="[0,1]^2") as writer:
        for _ in range(n_systems):
            f = rng.standard_normal((n_pairs, 1, grid, grid), dtype=np.float32)
            u = rng.uniform(0.5, 2.0) * gaussian_filter(f, sigma=(0, 0, 2, 2), mode="constant")
            writer.append(f, u, {"a": np.full((grid, grid), 1.0, np.float32)})
    return n_systems


def run_child(args, env):
    """Run ``python args`` to completion; its peak RSS in MB (``ru_maxrss`` is in KiB on Linux)."""
    proc = subprocess.Popen([sys.executable, *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"child failed ({proc.returncode}): {proc.stderr.read().decode()[-2000:]}")
    return usage.ru_maxrss / 1024


def train_once(path, out, threshold, env):
    """Peak RSS (MB) and training-loop seconds of one epoch on ``path``."""
    command = ["-c", CHILD, threshold, "train", "--config", "darcy", "--model", "nips",
               "--data.path", str(path), "--data.draws_per_system", "1", "--epochs", "1",
               "--out", str(out), "--force", "--quiet"]
    peak = run_child(command, env)
    return peak, json.loads((out / "history.json").read_text())[0]["seconds"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", default="0.1:41,1:41,4:64",
                        help="comma-separated SIZE_GB:GRID, e.g. 0.1:41,1:41")
    parser.add_argument("--pairs", type=int, default=100, help="pairs per system")
    parser.add_argument("--dir", default=None, help="where the files go (default a temporary folder)")
    parser.add_argument("--eager-too", action="store_true",
                        help="train on each file forced whole and forced lazy (not just the automatic mode)")
    parser.add_argument("--keep", action="store_true", help="keep the task files")
    args = parser.parse_args()

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    work = Path(args.dir or tempfile.mkdtemp(prefix="task_file_memory_"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"imports alone (torch, neuralop, nips_plugin): {run_child(['-c', IMPORT_ONLY], env):.0f} MB peak RSS")
    print(f"{'file GB':>8} {'grid':>5} {'systems':>7} {'train':>6} {'mode':>6} {'write s':>8} "
          f"{'peak RSS MB':>11} {'samples/s':>9}   (* the mode load_tasks picks)")
    thresholds = {"whole": str(float("inf")), "lazy": "0"}
    for spec in args.files.split(","):
        size_gb, grid = float(spec.split(":")[0]), int(spec.split(":")[1])
        path = work / f"tasks_{size_gb:g}GB_{grid}.h5"
        start = time.perf_counter()
        n_systems = write_file(path, size_gb, grid, args.pairs)
        written = time.perf_counter() - start
        n_train = n_systems - max(1, n_systems // 10)  # the default split
        auto = "lazy" if path.stat().st_size > EAGER_MAX_BYTES else "whole"
        try:
            for mode in ("whole", "lazy") if args.eager_too else (auto,):
                peak, seconds = train_once(path, work / "run", thresholds[mode], env)
                shown = mode + ("*" if mode == auto else "")
                print(f"{path.stat().st_size / 1e9:8.2f} {grid:5d} {n_systems:7d} {n_train:6d} {shown:>6} "
                      f"{written:8.1f} {peak:11.0f} {n_train / seconds:9.1f}", flush=True)
        finally:
            if not args.keep:
                path.unlink()
    shutil.rmtree(work / "run", ignore_errors=True)
    if not args.dir and not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
