"""Cost of each model against grid size: train-step time, inference time, peak memory.

``nips-plugin scaling`` (wired in :mod:`nips_plugin.cli`) calls
:func:`scaling_main`. Every model is built with
:func:`~nips_plugin.training.zoo.build_model` from the same packed in-context
channels (so FNO/TFNO see what NIPS/NAO see), with their zoo defaults except
the settings of the reference timings for the attention models (``qk_channels``,
``n_layers``, one head). Data are random fields: scaling is about cost, not
accuracy. One train step is forward + relative L2 loss + backward + Adam step.

Memory is measured first for every row (the first train step: optimiser
state, gradients, activations), then time. A model stops at its first
out-of-memory grid (row status ``"oom"``); larger grids are skipped for it. On
CPU each row's memory is measured in a forked child that builds the model and
the batch itself and may grow by at most ``memory_limit_mb`` (default 70% of
the available RAM), before this process has run any step; a grid whose memory,
extrapolated from the model's previous two grids along a power law, would
exceed the limit is skipped (``"skipped"``) instead of risking the machine.

Output folder: ``scaling.json`` (settings and rows) and ``scaling.png``
(log-log time and memory against the number of grid points).
"""

import platform
from functools import partial
from pathlib import Path

import torch
from neuralop.utils import count_model_params

from ..compat import patch_spectral_conv
from ..layers.context import ContextLayout, pack_context
from .profiling import (available_memory_mb, inference_fn, is_oom, peak_memory_mb,
                        power_law_extrapolate, relative_l2_loss, time_call, train_step_fn)
from ..training.trainer import write_json
from ..training.zoo import IN_CONTEXT_MODELS, build_model

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

COLUMNS = [("model", "model"), ("grid", "grid"), ("grid_points", "points"), ("tokens", "tokens"),
           ("params", "params"), ("train_ms", "train ms"), ("infer_ms", "infer ms"),
           ("peak_mb", "peak MB"), ("total_mb", "total MB"), ("status", "status")]


def _sample(layout, grid, batch_size, device, generator):
    """Random packed input and target of one batch."""
    d, cf, cu, q = layout.n_pairs, layout.in_components, layout.out_components, layout.n_queries

    def rand(*shape):
        return torch.randn(*shape, generator=generator).to(device)

    x = pack_context(rand(batch_size, d, cf, *grid), rand(batch_size, d, cu, *grid),
                     rand(batch_size, q, cf, *grid) if q else None)
    return x, rand(batch_size, layout.out_channels, *grid)


def _build(name, layout, n_dim, qk_channels, n_layers, n_heads):
    """Model ``name`` from the zoo, with the attention models' sizes of the reference timings."""
    overrides = dict(n_layers=n_layers)
    if name in IN_CONTEXT_MODELS:
        overrides.update(qk_channels=qk_channels, n_heads=n_heads)
    return build_model(name, layout, n_dim, **overrides)


def _setup(name, layout, grid, batch_size, device, amp_dtype, compile, seed, sizes):
    """Model, input batch and train-step closure of one row (built where it runs)."""
    torch.manual_seed(seed)
    model = _build(name, layout, len(grid), *sizes).to(device).train()
    if compile:
        model = torch.compile(model)
    x, y = _sample(layout, grid, batch_size, device, torch.Generator().manual_seed(seed))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_scaling = amp_dtype == torch.float16 and device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type) if loss_scaling else None
    return model, x, train_step_fn(model, x, y, relative_l2_loss, optimizer, amp_dtype, scaler)


def _first_step(state):
    state[2]()


def _mark_failed(row, exc):
    row.update(status="oom" if is_oom(exc) else "error", note=f"{type(exc).__name__}: {exc}"[:300])


def run_scaling(models, grids, batch_size, device="cpu", n_pairs=50, n_queries=0, qk_channels=40,
                n_layers=4, n_heads=1, n_dim=2, out=None, precision="fp32", compile=False,
                memory_limit_mb=None, warmup=1, repeat=3, seed=0, progress=True):
    """Time and memory of each model on each grid (see the module docstring).

    Parameters
    ----------
    models : sequence of str
        Names of :func:`~nips_plugin.training.zoo.build_model` (``nips``, ``nao``,
        ``linear_nao``, ``fno``, ``tfno``).
    grids : sequence of int
        Points per side ``n`` (grids ``n x n`` for ``n_dim=2``), increasing.
    batch_size : int
    device : str
        ``"cpu"`` or ``"cuda"`` (``"cuda:k"``).
    n_pairs, n_queries : int
        Context pairs ``d`` and queries ``q`` of the packed data (``q = 0``: the
        model reconstructs the context responses, as in the reference timings).
    qk_channels, n_layers, n_heads : int
        Attention models' ``dk``, layers and heads (``n_layers`` also for FNO/TFNO).
    n_dim : int
        Grid dimension.
    out : str or Path, optional
        Folder for ``scaling.json`` and ``scaling.png``.
    precision : {"fp32", "bf16", "fp16"}
        Autocast dtype of forward and loss (fp16 on CUDA with loss scaling).
    compile : bool
        ``torch.compile`` every model.
    memory_limit_mb : float, optional
        CPU: largest peak memory allowed (default 70% of the available RAM).
    warmup, repeat : int
        Untimed and timed calls per measurement (median reported).
    seed : int
    progress : bool
        Print each row as it is measured.

    Returns
    -------
    list of dict
        One row per model and grid: ``model, grid, grid_points, tokens, batch,
        params, train_ms, infer_ms, peak_mb`` (added by the first train step:
        optimiser state, gradients, activations; see
        :func:`~nips_plugin.evaluation.profiling.peak_memory_mb`), ``total_mb``
        (CUDA: peak allocated including model and data), ``status`` (``"ok"``,
        ``"oom"``, ``"skipped"`` or ``"error"``) and ``note``.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available")
    amp_dtype = PRECISIONS[precision]
    if device.type == "cpu" and memory_limit_mb is None:
        memory_limit_mb = 0.7 * available_memory_mb()
    patch_spectral_conv()  # FNO/TFNO: the exact forward on odd grids is the one the project runs
    layout = ContextLayout(n_pairs, 1, 1, n_queries)
    settings = dict(device=str(device), machine=_machine(device), batch_size=batch_size,
                    n_pairs=n_pairs, n_queries=n_queries, qk_channels=qk_channels, n_layers=n_layers,
                    n_heads=n_heads, precision=precision, compile=compile,
                    memory_limit_mb=memory_limit_mb, torch=torch.__version__)
    sizes = (qk_channels, n_layers, n_heads)
    rows = []
    # pass 1, memory: on CPU each row is built and stepped in a forked child, before this
    # process runs any step (its freed heap would otherwise be reused by the children and
    # blur their resident-set growth); a model stops at its first failing grid
    for name in models:
        done = []  # (grid points, peak MB) of this model's measured grids
        for n in sorted(grids):
            grid, points = (n,) * n_dim, n ** n_dim
            row = dict(model=name, grid="x".join(map(str, grid)), grid_points=points,
                       tokens=points * 2 if name in IN_CONTEXT_MODELS else points, batch=batch_size,
                       params=None, train_ms=None, infer_ms=None, peak_mb=None, total_mb=None,
                       status="ok", note="")
            rows.append(row)
            predicted = power_law_extrapolate(*zip(*done), points) if len(done) > 1 else None
            if memory_limit_mb is not None and predicted is not None and predicted > memory_limit_mb:
                row.update(status="skipped",
                           note=f"predicted {predicted:.0f} MB > limit {memory_limit_mb:.0f} MB")
                break
            setup = partial(_setup, name, layout, grid, batch_size, device, amp_dtype, compile, seed, sizes)
            try:
                row["params"] = count_model_params(_build(name, layout, n_dim, *sizes))
                row["peak_mb"] = peak_memory_mb(_first_step, device, limit_mb=memory_limit_mb, setup=setup)
                if device.type == "cuda":  # model, data, optimiser state and the step's peak
                    row["total_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
            except Exception as exc:  # one model's failure must not stop the study
                _mark_failed(row, exc)
            finally:
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            if row["status"] != "ok":
                break
            done.append((points, row["peak_mb"]))
    # pass 2, time, in this process
    failed = set()
    for row in rows:
        if row["status"] == "ok" and row["model"] in failed:
            row.update(status="skipped", note="a smaller grid failed")
        elif row["status"] == "ok":
            grid = tuple(int(v) for v in row["grid"].split("x"))
            try:
                model, x, step = _setup(row["model"], layout, grid, batch_size, device, amp_dtype, compile,
                                        seed, sizes)
                row["train_ms"] = 1e3 * time_call(step, device, warmup, repeat)
                row["infer_ms"] = 1e3 * time_call(inference_fn(model, x, amp_dtype), device, warmup, repeat)
            except Exception as exc:
                _mark_failed(row, exc)
            finally:
                model = x = step = None
                if device.type == "cuda":
                    torch.cuda.empty_cache()
        if row["status"] != "ok":
            failed.add(row["model"])
        _report(row, progress)
        if out is not None:  # after every row: a study stopped from outside keeps its rows
            write_scaling(rows, settings, out, plot=False)
    if out is not None:
        write_scaling(rows, settings, out)
    return rows


def _machine(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def _report(row, progress):
    if progress:
        print(" | ".join(f"{label} {_fmt(row[key])}" for key, label in COLUMNS)
              + (f" ({row['note']})" if row["note"] else ""), flush=True)


def _fmt(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def scaling_table(rows):
    """A Markdown table of scaling rows."""
    lines = ["| " + " | ".join(label for _, label in COLUMNS) + " |",
             "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(_fmt(row[key]) for key, _ in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def write_scaling(rows, settings, out, plot=True):
    """Write ``scaling.json`` (atomically) and the log-log plot ``scaling.png`` into folder ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(dict(settings=settings, rows=rows), out / "scaling.json")
    if plot:
        plot_scaling(rows, out / "scaling.png")


def plot_scaling(rows, path):
    """Train-step time, inference time and peak memory against grid points, log-log,
    one line per model; a cross marks the grid where a model ran out of memory."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("train_ms", "train step (ms)"), ("infer_ms", "inference (ms)"),
              ("peak_mb", "peak memory (MB)")]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    for model in dict.fromkeys(row["model"] for row in rows):
        mine = [row for row in rows if row["model"] == model]
        ok = [row for row in mine if row["status"] == "ok"]
        failed = [row for row in mine if row["status"] == "oom"]
        for ax, (key, _) in zip(axes, panels):
            pts = [(row["grid_points"], row[key]) for row in ok if row[key]]
            line, = ax.plot(*zip(*pts), marker="o", label=model) if pts else ax.plot([], [], label=model)
            if failed and pts:
                ax.plot([failed[0]["grid_points"]], [pts[-1][1]], marker="x", markersize=10,
                        color=line.get_color(), linestyle="none")
    for ax, (_, label) in zip(axes, panels):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("grid points N")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8, title="x: out of memory", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _ints(text):
    return [int(v) for v in str(text).split(",") if v.strip()]


def add_scaling_arguments(parser):
    """Add the ``nips-plugin scaling`` options to an ``argparse`` parser."""
    parser.add_argument("--models", default="nips,linear_nao,nao,fno,tfno",
                        help="comma-separated model names")
    parser.add_argument("--grids", default="21,41,81,121", help="points per side, comma-separated")
    parser.add_argument("--batch", type=int, default=10, help="batch size")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--out", default="runs/scaling", help="folder for scaling.json and scaling.png")
    parser.add_argument("--n-pairs", type=int, default=50, help="context pairs d")
    parser.add_argument("--n-queries", type=int, default=0,
                        help="query functions q (0: reconstruct the context)")
    parser.add_argument("--qk-channels", type=int, default=40, help="attention models' dk")
    parser.add_argument("--n-layers", type=int, default=4)
    parser.add_argument("--precision", default="fp32", choices=sorted(PRECISIONS))
    parser.add_argument("--compile", action="store_true", help="torch.compile every model")
    parser.add_argument("--memory-limit-mb", type=float, default=None,
                        help="CPU: largest peak memory allowed (default: 70%% of available RAM)")
    parser.add_argument("--repeat", type=int, default=3, help="timed calls per measurement")
    parser.add_argument("--quiet", action="store_true", help="no per-row progress")
    return parser


def scaling_main(args):
    """Run :func:`run_scaling` from parsed ``nips-plugin scaling`` arguments and print the table."""
    rows = run_scaling([m.strip() for m in args.models.split(",") if m.strip()], _ints(args.grids),
                       args.batch, device=args.device, n_pairs=args.n_pairs, n_queries=args.n_queries,
                       qk_channels=args.qk_channels, n_layers=args.n_layers, out=args.out,
                       precision=args.precision, compile=args.compile,
                       memory_limit_mb=args.memory_limit_mb, repeat=args.repeat,
                       progress=not args.quiet)
    print(scaling_table(rows))
    print(f"scaling.json and scaling.png in {args.out}")
    return rows
