"""Train NIPS, NAO, LinearNAO, FNO and TFNO side by side on the same data and report.

Every model is trained by :func:`~nips_plugin.training.run.train_run` on the
same tasks, the same training draws and test batches (same seed), with the
same loss and neuraloperator Trainer, for the same number of epochs. Reported
errors are the mean relative L2 error per query function on unseen systems,
in physical units, of the model after its last epoch (no selection on test
data). ``fno_oracle`` (FNO given the hidden field and the query input) is the
reference for what knowing the physics buys.

Output folder::

    out/results.json   {"preset", "device", "rows": [...], ...}
    out/results.md     the table
    out/<model>/       each model's run folder (checkpoint, data processor, config, history)
    out/learning_curves.png, out/predictions.png
"""

import math
import platform
from pathlib import Path

import numpy as np
import torch
from neuralop.utils import count_model_params

from ..compat import patch_spectral_conv
from ..data.loaders import QueryRelL2Loss
from .run import UserError, check_sampling, load_data, prepare_dir, train_run
from .trainer import write_json
from .zoo import IN_CONTEXT_MODELS, MODELS

DEFAULT_MODELS = ("nips", "nao", "linear_nao", "fno", "tfno")

#: finer grids on which the generated presets are also evaluated (zero-shot super-resolution)
SUPERRESOLUTION = {"darcy": (41, 81), "elasticity": (57,), "tiny": (13,)}

#: NAO / LinearNAO are evaluated on grids up to this many points (quadratic cost)
QUADRATIC_MAX_POINTS = 2000

#: benchmark settings per preset: sampling and training budget (the default fits
#: 10 minutes on 2 CPU cores for the five models plus the oracle row). Within a
#: few hundred optimiser steps the in-context models learn fastest with the
#: kernel layer alone (measured on the Darcy preset: 0.58 vs 0.66 unseen-system
#: error after 92 steps for 1 vs 2 layers), so the budgets use ``n_layers=1``
#: for them; longer runs should use more layers (``nips-plugin train``).
PRESET_SETTINGS = {
    "darcy": dict(n_pairs=40, n_queries=10, batch_size=8, epochs=10, in_context_layers=1),
    "elasticity": dict(n_pairs=30, n_queries=10, batch_size=8, epochs=6, in_context_layers=1),
    "tiny": dict(n_pairs=6, n_queries=2, batch_size=4, epochs=2, in_context_layers=1),
    "file": dict(n_pairs=40, n_queries=10, batch_size=8, epochs=10, in_context_layers=1),
}

COLUMNS = [("model", "model"), ("params", "params"), ("id_rel_l2", "unseen rel L2"),
           ("ood_rel_l2", "OOD rel L2"), ("ctx_rel_l2", "context rel L2"),
           ("kernel_rel_err", "kernel err"), ("recovery_rel_err", "field recovery err"),
           ("sec_per_epoch", "s/epoch"), ("peak_mem_mb", "peak MB"), ("epochs", "epochs")]


def machine_description(device):
    if str(device).startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


@torch.no_grad()
def context_reconstruction_error(model, processor, loader, layout):
    """The papers' metric: mean relative L2 error of reconstructing the context responses
    from the context inputs (q = 0), physical units, over a test loader."""
    d, cf, cu = layout.n_pairs, layout.in_components, layout.out_components
    metric = QueryRelL2Loss(out_components=cu)
    device = next(model.parameters()).device
    errors = []
    for batch in loader:
        u_ctx = batch["x"][:, d * cf:d * (cf + cu)].to(device)
        sample = processor.preprocess({"x": batch["x"].clone(), "y": batch["y"].clone()})
        x_ctx = sample["x"][:, :d * (cf + cu)]
        out = model(x_ctx)
        scale = processor.sigma_u.to(device).repeat(d).view(1, -1, *[1] * (out.ndim - 2))
        errors.append(metric.per_function(out * scale, u_ctx))
    return torch.cat(errors).mean().item()


@torch.no_grad()
def predict_batch(model, processor, batch):
    """Prediction and truth for a test batch, physical units (the batch is left untouched)."""
    sample = processor.preprocess({"x": batch["x"].clone(), "y": batch["y"].clone()})
    out, sample = processor.postprocess(model(sample["x"]), sample)
    return out, sample["y"]


def test_error(model, processor, loader):
    """Mean relative L2 error per query function over a loader, physical units."""
    metric = QueryRelL2Loss(out_components=processor.layout.out_components)
    errors = [metric.per_function(*predict_batch(model, processor, batch)) for batch in loader]
    return torch.cat(errors).mean().item()


def superresolution_errors(runs, preset, resolutions, seed, settings, progress=True):
    """Zero-shot super-resolution: the unseen systems regenerated on finer grids, evaluated
    with the models and data processors trained on the preset's grid.

    The generators sample the same continuous systems and inputs at any resolution,
    so only the grid changes. NAO and LinearNAO are evaluated up to
    :data:`QUADRATIC_MAX_POINTS` grid points (their cost is quadratic in it).

    Returns
    -------
    dict
        model -> {resolution (str): error or None}
    """
    from ..data.loaders import load_incontext
    errors = {name: {} for name in runs}
    for n in resolutions:
        tasks = load_data(preset, resolution=n, seed=seed, progress=progress)
        for name, run in runs.items():
            if name in ("nao", "linear_nao") and math.prod(tasks.grid_shape) > QUADRATIC_MAX_POINTS:
                errors[name][str(n)] = None
                continue
            mode = "oracle" if name == "fno_oracle" else "incontext"
            _, loaders, _ = load_incontext(tasks, settings["n_pairs"], settings["n_queries"],
                                           batch_size=settings["batch_size"], seed=seed, mode=mode)
            model, processor = run["model"], run["processor"]
            errors[name][str(n)] = test_error(model, processor, loaders["id"])
    return errors


def interpretation_metrics(rows, runs, tasks, settings, seed):
    """Add ``kernel_rel_err``, ``kernel_rel_err_span``, ``recovery_rel_err`` (and
    ``phase_accuracy`` for two-phase fields) to the in-context models' rows; return the
    classical (PDE known, no learning) recovery errors from the same contexts, per noise level."""
    from ..interpret import kernel_metrics
    systems = tasks.indices("test")
    classical = None
    for row in rows:
        if row["model"] not in IN_CONTEXT_MODELS:
            continue
        run = runs[row["model"]]
        noise = (0.0, 0.01, 0.1) if classical is None else ()
        metrics = kernel_metrics(run["model"], run["processor"], tasks, systems, settings["n_pairs"],
                                 seed=seed, noise_levels=noise)
        for key in ("kernel_rel_err", "kernel_rel_err_span", "recovery_rel_err", "phase_accuracy"):
            if key in metrics:
                row[key] = float(metrics[key])
        if classical is None:
            classical = {"rel_err": {str(k): float(v) for k, v in metrics["classical_rel_err"].items()}}
            if "classical_phase_accuracy" in metrics:
                classical["phase_accuracy"] = {str(k): float(v)
                                               for k, v in metrics["classical_phase_accuracy"].items()}
    return classical


def train_step_memory_mb(model, processor, loader, device):
    """Peak memory of one training step (forward, loss, backward) of ``model`` on one batch."""
    from .profiling import peak_memory_mb
    batch = next(iter(loader))
    sample = processor.preprocess({"x": batch["x"].clone(), "y": batch["y"].clone()})
    loss = QueryRelL2Loss(out_components=processor.layout.out_components)

    def step():
        model.zero_grad(set_to_none=True)
        loss(model(sample["x"]), sample["y"]).backward()

    return peak_memory_mb(step, device)


def run_benchmark(preset="darcy", data=None, models=DEFAULT_MODELS, epochs=None, device="cpu",
                  out="runs/benchmark", seed=0, force=False, oracle=True, progress=True,
                  **overrides):
    """Train and compare models; write results (see module docstring).

    Parameters
    ----------
    preset : str
        Generated data preset (``darcy``, ``elasticity``, ``tiny``); ignored with ``data``.
    data : str, optional
        A task file instead of a preset.
    models : sequence of str
        Models to compare (see :data:`nips_plugin.training.zoo.MODELS`).
    epochs : int, optional
        Epochs for every model (default: the preset's budget).
    device : str
    out : str
        Output folder (refused if it exists and is not empty, unless ``force``).
    seed : int
        Data draws, initialisation and test batches; the same seed gives the same numbers.
    oracle : bool
        Add the ``fno_oracle`` row when the tasks have hidden fields.
    **overrides
        ``n_pairs``, ``n_queries``, ``batch_size``, ``n_test_samples_per_system``,
        ``in_context_layers`` (``n_layers`` of NIPS / NAO / LinearNAO).

    Returns
    -------
    dict
        What ``results.json`` holds.
    """
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise UserError(f"unknown model(s) {', '.join(unknown)}; expected some of {', '.join(MODELS)}")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda requested but no CUDA device is available")
    settings = dict(PRESET_SETTINGS["file" if data else preset] if (data or preset in PRESET_SETTINGS)
                    else PRESET_SETTINGS["darcy"])
    settings.update({k: v for k, v in overrides.items() if v is not None})
    if epochs is not None:
        settings["epochs"] = epochs
    tasks = load_data(preset, data, seed=seed, progress=progress)
    check_sampling(tasks, settings["n_pairs"], settings["n_queries"])
    out = prepare_dir(out, force=force)
    patch_spectral_conv()  # FNO/TFNO exact on odd grids (neuraloperator 2.0.0 bug)

    results_extra = {}
    names = list(models) + (["fno_oracle"] if oracle and tasks.params and "fno_oracle" not in models else [])
    rows, runs = [], {}
    for name in names:
        if progress:
            print(f"[benchmark] training {name} ({names.index(name) + 1}/{len(names)})", flush=True)
        sampling = {k: v for k, v in settings.items() if k != "in_context_layers"}
        layers = {"n_layers": settings["in_context_layers"]} if name in IN_CONTEXT_MODELS else {}
        run = train_run(name, tasks, out / name, device=device, seed=seed, progress=progress,
                        model_overrides=layers, **sampling)
        model, processor, history = run["model"], run["processor"], run["history"]
        model.eval()
        final = history[-1]
        row = {
            "model": name,
            "params": count_model_params(model),
            "id_rel_l2": final.get("id_rel_l2"),
            "ood_rel_l2": final.get("ood_rel_l2"),
            "ctx_rel_l2": (context_reconstruction_error(model, processor, run["test_loaders"]["id"],
                                                        processor.layout)
                           if name in IN_CONTEXT_MODELS else None),
            "sec_per_epoch": float(np.mean([h["seconds"] for h in history])),
            "peak_mem_mb": train_step_memory_mb(model, processor, run["test_loaders"]["id"], device),
            "epochs": len(history),
        }
        rows.append(row)
        runs[name] = run
        if progress:
            print("[benchmark] " + ", ".join(f"{k}={_fmt(v)}" for k, v in row.items()), flush=True)

    interpretable = tasks.attrs.get("pde") in ("darcy", "elasticity") and tasks.params
    if interpretable:
        if progress:
            print("[benchmark] kernels vs exact Green's operators, hidden-field recovery", flush=True)
        results_extra["classical_recovery"] = interpretation_metrics(rows, runs, tasks, settings, seed)
    resolutions = () if data else SUPERRESOLUTION.get(preset, ())
    if resolutions:
        if progress:
            print(f"[benchmark] zero-shot super-resolution on {resolutions} grids", flush=True)
        superres = superresolution_errors(runs, preset, resolutions, seed, settings, progress)
        for row in rows:
            row["superres_rel_l2"] = superres[row["model"]]

    results = {"preset": Path(data).name if data else preset, "device": str(device),
               "machine": machine_description(device), "seed": seed,
               "settings": settings, "grid_shape": list(tasks.grid_shape), "rows": rows,
               **results_extra}
    write_json(results, out / "results.json")
    (out / "results.md").write_text(results_table(results))
    from .plots import plot_learning_curves, plot_predictions
    plot_learning_curves(runs, out / "learning_curves.png")
    plot_predictions(runs, out / "predictions.png")
    return results


def _fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}" if v < 10 else f"{v:.1f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def results_table(results):
    """The results as a Markdown table with a header line naming data, device and machine."""
    head = (f"Benchmark `{results['preset']}` on {results['device']} ({results['machine']}), "
            f"seed {results['seed']}, grid {'x'.join(map(str, results['grid_shape']))}, "
            f"d={results['settings']['n_pairs']} context pairs, q={results['settings']['n_queries']} queries.\n"
            "Errors: mean relative L2 per query function on unseen systems (physical units).\n\n")
    resolutions = list(results["rows"][0].get("superres_rel_l2", {})) if results["rows"] else []
    titles = [title for _, title in COLUMNS] + [f"unseen @{n}x{n}" for n in resolutions]
    lines = ["| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]
    for row in results["rows"]:
        cells = [_fmt(row.get(key)) for key, _ in COLUMNS]
        cells += [_fmt(row["superres_rel_l2"][n]) for n in resolutions]
        lines.append("| " + " | ".join(cells) + " |")
    table = head + "\n".join(lines) + "\n"
    classical = results.get("classical_recovery")
    if classical:
        shown = ", ".join(f"{float(k):.0%} noise: {v:.4f}" for k, v in classical["rel_err"].items())
        table += (f"\nHidden field recovered with the PDE known (least squares on the discretised "
                  f"equation, same {results['settings']['n_pairs']} context pairs, no learning): "
                  f"relative error {shown}.\n")
    return table
