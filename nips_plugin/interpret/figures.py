"""Figures of a learned kernel against the exact Green's operator, and the run-level report."""

import inspect
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the non-interactive backend)
import numpy as np  # noqa: E402

from ..data import families, load_tasks  # noqa: E402
from ..data.noise import add_response_noise  # noqa: E402
from .predictor import InContextPredictor  # noqa: E402
from .metrics import ARRAYS, evaluate_system  # noqa: E402

_INNER = (slice(1, -1),) * 2


def _show(ax, field, title, **kwargs):
    """Node field ``[n, n]`` (axis 0 = x) as an image on the unit square, x to the right."""
    im = ax.imshow(np.asarray(field).T, origin="lower", extent=(0, 1, 0, 1), **kwargs)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    return im


def _rel(a, b):
    return np.linalg.norm(a[_INNER] - b[_INNER]) / np.linalg.norm(b[_INNER])


def plot_interpretation(kernel, greens, true, recovered, classical=None, out=".", points=None):
    """Write the interpretation figures of one system.

    Parameters
    ----------
    kernel, greens : np.ndarray
        ``[N*c, N*c]`` learned kernel ``M`` (physical units) and exact ``G``,
        component-major, ``N = n*n``.
    true, recovered : np.ndarray
        ``[n, n]`` hidden field and its estimate from ``kernel``.
    classical : dict of float to np.ndarray, optional
        ``{noise level: [n, n] estimate}`` of the classical baseline.
    out : str or os.PathLike
        Folder to write into (created).
    points : sequence of (int, int), optional
        Grid nodes whose kernel rows are shown; default three interior nodes.

    Returns
    -------
    dict of str to pathlib.Path
        ``fields`` (true, recovered and classical fields, relative errors on
        the interior nodes in the titles), ``kernel_rows`` (row of ``M`` and
        of ``G`` at each point, output component 0, one image per input
        component: the response at the point to a unit load anywhere) and
        ``spectrum`` (singular values of ``M`` and ``G``).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n = true.shape[0]
    N = n * n
    c = kernel.shape[1] // N
    classical = classical or {}
    points = points or [(n // 2, n // 2), (n // 4, 3 * n // 4), (3 * n // 4, n // 4)]
    paths = {}

    panels = [(true, "true"), (recovered, f"from kernel ({_rel(recovered, true):.1%})")]
    panels += [(f, f"classical, noise {s:g} ({_rel(f, true):.1%})") for s, f in classical.items()]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.8 * len(panels) + 1, 3), squeeze=False,
                             layout="constrained")
    lim = dict(vmin=true.min(), vmax=true.max(), cmap="viridis")
    for ax, (field, title) in zip(axes[0], panels):
        im = _show(ax, field, title, **lim)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8)
    paths["fields"] = out / "fields.png"
    fig.savefig(paths["fields"], dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(len(points), 2 * c, figsize=(2.6 * 2 * c, 2.6 * len(points)), squeeze=False)
    for row, (i, j) in enumerate(points):
        for k in range(c):
            g = greens[i * n + j, k * N:(k + 1) * N].reshape(n, n)
            m = kernel[i * n + j, k * N:(k + 1) * N].reshape(n, n)
            scale = dict(vmin=-np.abs(g).max(), vmax=np.abs(g).max(), cmap="RdBu_r")
            for col, (field, name) in enumerate(((m, "M"), (g, "G"))):
                ax = axes[row, 2 * k + col]
                _show(ax, field, f"{name} row ({i},{j}), load comp {k}", **scale)
                ax.plot((i / (n - 1),), (j / (n - 1),), "k+", ms=8)
    fig.tight_layout()
    paths["kernel_rows"] = out / "kernel_rows.png"
    fig.savefig(paths["kernel_rows"], dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for matrix, label in ((kernel, "learned M"), (greens, "exact G")):
        ax.semilogy(np.linalg.svd(matrix, compute_uv=False), label=label)
    ax.set_xlabel("index")
    ax.set_ylabel("singular value")
    ax.legend()
    fig.tight_layout()
    paths["spectrum"] = out / "spectrum.png"
    fig.savefig(paths["spectrum"], dpi=120)
    plt.close(fig)
    return paths


def run_tasks(config):
    """Read back or regenerate the tasks a run was trained on, from its ``config.json``.

    A run trained on a task file (``data.path``, recorded from
    :attr:`~nips_plugin.data.tasks.TaskSet.source`) reads that file again, with
    the benchmark's noise (``noise_level``, ``noise_seed`` in ``data.attrs``)
    added again the same way. A generated run calls its generator
    (``data.attrs["generator"]``, a function of :mod:`nips_plugin.data.families`)
    with the parameters recorded in ``data.attrs`` (cached generations are reused).

    Raises
    ------
    ValueError
        When neither is recorded, the file is gone, or the data read or
        generated now have different attributes (another file at that path,
        another ``GENERATOR_VERSION``): pass the tasks explicitly then.
    """
    attrs = config["data"]["attrs"]
    path = config["data"].get("path")
    if path is not None:
        if not Path(path).exists():
            raise ValueError(f"the run's task file {path} is gone; pass tasks= (nips-plugin interpret --data FILE)")
        tasks = load_tasks(path)
        if "noise_level" in attrs:
            tasks = add_response_noise(tasks, attrs["noise_level"], attrs.get("noise_seed", 0))
    else:
        generate = getattr(families, str(attrs.get("generator")), None)
        if not callable(generate):
            raise ValueError("the run records neither a task file nor a generator of "
                             "nips_plugin.data.families; pass tasks= explicitly")
        names = set(inspect.signature(generate).parameters) - {"cache_dir", "progress"}
        tasks = generate(**{k: v for k, v in attrs.items() if k in names}, progress=False)
    if tasks.attrs != attrs:
        raise ValueError("reading or regenerating the run's data gave different attributes "
                         f"({sorted(set(tasks.attrs.items()) ^ set(attrs.items()))}); pass tasks= explicitly")
    return tasks


def interpret_run(run_dir, system=0, out=None, tasks=None, split="test", seed=0):
    """Numbers and figures interpreting one system with a trained in-context run.

    Parameters
    ----------
    run_dir : str or os.PathLike
        A run folder of NIPS, NAO or LinearNAO (:meth:`InContextPredictor.from_run`).
    system : int, default 0
        Which system of the ``split``: ``tasks.indices(split)[system]``.
    out : str or os.PathLike, optional
        Output folder, default ``run_dir/interpret``.
    tasks : TaskSet, optional
        The run's tasks; default regenerated from its config (:func:`run_tasks`).
    split : {"test", "ood", "train"}, default "test"
        ``"test"``: unseen systems of the training law.
    seed : int, default 0
        Seed of the context draw and of the baseline's noise.

    Returns
    -------
    dict
        The numbers of :func:`~nips_plugin.interpret.metrics.evaluate_system`
        (``kernel_rel_err``, ``kernel_rel_err_span``, ``recovery_rel_err``,
        ``classical_rel_err`` per noise level, ``phase_accuracy`` for two-phase
        fields, ``system``: index in the TaskSet), ``figures`` (paths of
        :func:`plot_interpretation`) and ``json``, the path of the numbers
        written as ``interpret.json``.
    """
    predictor = InContextPredictor.from_run(run_dir)
    tasks = run_tasks(predictor.config) if tasks is None else tasks
    systems = tasks.indices(split)
    if not 0 <= system < len(systems):
        raise ValueError(f"system must be in [0, {len(systems)}) for the {len(systems)} {split!r} "
                         f"systems, got {system}")
    report = evaluate_system(predictor, tasks, systems[system], seed)
    numbers = {k: v for k, v in report.items() if k not in ARRAYS}
    out = Path(run_dir) / "interpret" if out is None else Path(out)
    figures = plot_interpretation(report["kernel"], report["greens"], report["true"], report["recovered"],
                                  report["classical"], out)
    path = out / "interpret.json"
    path.write_text(json.dumps({**numbers, "split": split, "figures": {k: str(v) for k, v in figures.items()}},
                               indent=2))
    return {**numbers, "figures": figures, "json": path}
