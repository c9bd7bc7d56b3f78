"""GPU check of NIPS's cost, for one H100/H200, in under 8 minutes; one command:

    python benchmarks/gpu_check.py [--out runs/gpu_check] [--models nips,linear_nao,nao,fno,tfno]

1. Train step (forward + relative L2 + backward + Adam) at 121x121, batch 100,
   d=50, dk=40, 4 layers, 1 head, fp32: the plain reference implementation
   (``benchmarks/reference_forward.py``) on this GPU, our reference-compatible
   NIPS and our default NIPS, next to the authors' published H100 numbers
   (179 ms, 13.2 GiB). Peak = ``torch.cuda.max_memory_allocated`` over the
   timed steps (model, optimiser state, data and activations).
2. ``nips-plugin scaling --device cuda --batch 10`` per model, each in its own
   process with a time limit, on growing grids (NIPS up to 1001x1001): the
   largest grid each model ran, and where it stopped (out of memory, or the
   time limit).

Each part is a separate process with a timeout, so a hang or a crash in one
loses only that part. Results: ``<out>/step.json``, ``<out>/<model>/scaling.json``
and ``scaling.png``, ``<out>/summary.md`` (the printed tables).
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: the authors' scripts on one H100 80GB (design note, section 5)
PUBLISHED = {"train_ms": 179.0, "peak_gib": 13.2}

#: model -> (grids, seconds allowed); grids stop where the authors' scripts ran out of memory
SCALING = {
    "nips": ("21,41,81,121,201,301,401,601,801,1001", 140),
    "linear_nao": ("21,41,61,81,101,121,161", 60),
    "nao": ("21,41,61,81,101,121", 50),
    "fno": ("21,41,81,121,201,301,401,601,801,1001", 45),
    "tfno": ("21,41,81,121,201,301,401,601,801,1001", 45),
}
STEP_TIMEOUT_S = 90  # all limits together: 7 min 10 s


def step_part(out, n=121, batch=100, repeat=10, device="cuda"):
    """Part 1, in this process: time and peak memory of the three train steps on CUDA."""
    import torch
    sys.path.insert(0, str(HERE))
    from cpu_train_step import train_steps

    device = torch.device(device)
    rows = []
    for name, step in train_steps(n, batch, device).items():
        row = dict(implementation=name, grid=f"{n}x{n}", batch=batch)
        try:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            for _ in range(3):
                step()
            times = []
            for _ in range(repeat):
                torch.cuda.synchronize(device)
                start = time.perf_counter()
                step()
                torch.cuda.synchronize(device)
                times.append(time.perf_counter() - start)
            row.update(train_ms=1e3 * statistics.median(times),
                       peak_gib=torch.cuda.max_memory_allocated(device) / 2**30, status="ok")
        except Exception as exc:  # report and go on with the next implementation
            row.update(status=f"{type(exc).__name__}: {exc}"[:200])
        rows.append(row)
        print(row, flush=True)
        del step
    result = dict(device=torch.cuda.get_device_name(device), rows=rows)
    (out / "step.json").write_text(json.dumps(result, indent=2))


def run(cmd, timeout_s):
    """Run ``cmd``; returns "ok", "timeout after N s" or "exit code K"."""
    try:
        code = subprocess.run(cmd, timeout=timeout_s).returncode
    except subprocess.TimeoutExpired:
        return f"timeout after {timeout_s} s"
    return "ok" if code == 0 else f"exit code {code}"


def summary(out, step_status, scaling_status):
    lines = ["## 1. train step, 121x121, batch 100, fp32 (d=50, dk=40, 4 layers, 1 head)", "",
             "| implementation | train ms | peak GiB | status |", "|---|---|---|---|",
             f"| authors' scripts (published, H100) | {PUBLISHED['train_ms']:.0f} | "
             f"{PUBLISHED['peak_gib']:.1f} | - |"]
    step_file = out / "step.json"
    if step_file.exists():
        step = json.loads(step_file.read_text())
        lines[0] += f" on {step['device']}"
        for row in step["rows"]:
            ms, gib = row.get("train_ms"), row.get("peak_gib")
            lines.append(f"| {row['implementation']} | {'-' if ms is None else f'{ms:.0f}'} | "
                         f"{'-' if gib is None else f'{gib:.2f}'} | {row['status']} |")
    else:
        lines.append(f"| (no result) | - | - | {step_status} |")
    lines += ["", "## 2. largest grid per model, batch 10, fp32 (`nips-plugin scaling --device cuda`)", "",
              "| model | largest grid run | train ms | infer ms | peak MB (step) | total MB | stopped at "
              "| process |",
              "|---|---|---|---|---|---|---|---|"]
    for model, status in scaling_status.items():
        file = out / model / "scaling.json"
        rows = json.loads(file.read_text())["rows"] if file.exists() else []
        ok = [r for r in rows if r["status"] == "ok"]
        failed = [r for r in rows if r["status"] != "ok"]
        best = ok[-1] if ok else {}
        if failed:
            stop = f"{failed[0]['grid']} ({failed[0]['status']})"
        else:
            stop = "-" if status == "ok" else "time limit"

        def fmt(key):
            return "-" if best.get(key) is None else f"{best[key]:,.0f}"

        lines.append(f"| {model} | {best.get('grid', '-')} | {fmt('train_ms')} | {fmt('infer_ms')} | "
                     f"{fmt('peak_mb')} | {fmt('total_mb')} | {stop} | {status} |")
    text = "\n".join(lines)
    (out / "summary.md").write_text(text + "\n")
    return text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/gpu_check")
    parser.add_argument("--models", default=",".join(SCALING), help="models of part 2")
    parser.add_argument("--step-only", action="store_true", help=argparse.SUPPRESS)  # part 1's process
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.step_only:
        step_part(out)
        return
    start = time.time()
    step_status = run([sys.executable, __file__, "--step-only", "--out", str(out)], STEP_TIMEOUT_S)
    scaling_status = {}
    for model in [m for m in args.models.split(",") if m]:
        grids, timeout_s = SCALING[model]
        scaling_status[model] = run([sys.executable, "-m", "nips_plugin", "scaling", "--models", model,
                                     "--grids", grids, "--batch", "10", "--device", "cuda",
                                     "--out", str(out / model), "--repeat", "3", "--quiet"], timeout_s)
    print(summary(out, step_status, scaling_status))
    print(f"\n{time.time() - start:.0f} s; results in {out}")


if __name__ == "__main__":
    main()
