"""Train NIPS, NAO, LinearNAO, FNO and TFNO side by side on the same data and report.

Every model is trained by :func:`~nips_plugin.training.run.train_run` on the
same tasks, the same training draws (in the same order) and test batches (same
seed), with the same loss and neuraloperator Trainer. The rule is **equal
training time**: each preset gives every model the number of epochs that takes
about :data:`BUDGET_SECONDS` on the 2-core CPU machine the presets were
calibrated on (fixed epochs, so the same seed gives the same numbers anywhere;
a model with fewer epochs sees a prefix of the same draws). Reported errors
are the mean relative L2 error per query function on unseen systems, in
physical units, of the model after its last epoch (no selection on test data).

Two rows need no training: ``lstsq``, in-context least squares on the same
test draws (fit the query input by the context inputs, predict with the same
combination of the context responses; kernel ``U F^+``), the floor every
learned model must beat, and, when the data are measured symmetric,
``lstsq_sym``, which also uses that the operator is symmetric
(:mod:`nips_plugin.layers.context_fit`). ``fno_oracle`` (FNO given the hidden
field and the query input) is the reference for what knowing the physics buys.

Output folder::

    out/results.json   {"preset", "device", "rows": [...], ...}
    out/results.md     the table
    out/<model>/       each model's run folder (checkpoint, data processor, config, history)
    out/learning_curves.png, out/predictions.png
"""

import itertools
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from neuralop.utils import count_model_params

from ..compat import patch_spectral_conv
from ..data.loaders import QueryRelL2Loss, load_incontext
from ..data.noise import add_response_noise
from ..layers.context import unpack_context
from ..training.run import UserError, check_sampling, load_data, prepare_dir, train_run
from ..training.trainer import write_json
from ..training.zoo import (IN_CONTEXT_MODELS, MODELS, SYMMETRY_TOLERANCE, build_model, optimizer_defaults,
                            resolve_local_operator)

#: the enhanced in-context models next to their papers' configurations (``*_paper``), FNO, TFNO
DEFAULT_MODELS = ("nips", "nips_paper", "nao", "nao_paper", "linear_nao", "linear_nao_paper", "fno", "tfno")

#: finer grids on which the generated presets are also evaluated (zero-shot super-resolution)
SUPERRESOLUTION = {"darcy": (41, 81), "elasticity": (57,), "tiny": (13,)}

#: models contracting attention in the quadratic order (``attention_order="quadratic"``) are
#: evaluated on grids up to this many points
QUADRATIC_MAX_POINTS = 2000

#: no-learning rows: name -> (context fit, with the shared operator's starting point, with the
#: local operator): in-context least squares, its symmetric completion, (``lstsq_laplace``) the
#: enhanced in-context models before training: the data's fit (symmetric where measured so) plus
#: the context-scaled inverse Dirichlet Laplacian on the rest, and (``lstsq_local``, only where the
#: training data choose a local operator, :func:`~nips_plugin.training.zoo.resolve_local_operator`,
#: the output-error fit of noisy data included) the same with each context's fitted local
#: operator in its place
#: (:class:`~nips_plugin.interpret.LeastSquaresPredictor`)
BASELINES = {"lstsq": ("least_squares", False, False), "lstsq_sym": ("symmetric", False, False),
             "lstsq_laplace": (None, True, False), "lstsq_local": (None, True, True)}


def baseline_predictor(name, layout, n_dim, symmetric, local_operator=None):
    """The predictor of no-learning row ``name`` (:data:`BASELINES`) for data measured
    ``symmetric`` or not, with the data's ``local_operator``."""
    from ..interpret import LeastSquaresPredictor
    mode, prior, local = BASELINES[name]
    mode = mode or ("symmetric" if symmetric else "least_squares")
    return LeastSquaresPredictor(layout.n_pairs, layout.in_components, layout.out_components, n_dim, mode,
                                 shared_operator_modes=12 if prior else None,
                                 local_operator=local_operator if local else None)

#: training time per model that the presets' epochs were calibrated to (seconds on
#: the 2-core CPU sandbox, see the module docstring)
BUDGET_SECONDS = 40

#: benchmark settings per preset: sampling, and epochs per model for the equal-time rule
#: (``calibrate_epochs`` on the 2-core sandbox with nothing else running, batch 16, 900
#: samples per epoch, Darcy, s/epoch: NIPS 4.5, nips_paper 3.1, NAO 4.6, nao_paper 2.4,
#: LinearNAO 4.6, linear_nao_paper 2.5, FNO 7.9, TFNO 9.1, oracle 5.7). The in-context
#: models use one attention layer (the kernel layer) in this budget.
PRESET_SETTINGS = {
    "darcy": dict(n_pairs=40, n_queries=10, batch_size=16, samples_per_epoch=900, in_context_layers=1,
                  n_test_samples_per_system=4,
                  epochs=dict(nips=9, nips_paper=13, nao=9, nao_paper=16, linear_nao=9, linear_nao_paper=16,
                              fno=5, tfno=4, fno_oracle=7)),
    # elasticity (29x29, 2 components; s/epoch of 450 samples: NIPS 4.9, nips_paper 3.8, NAO 6.9,
    # nao_paper 4.2, LinearNAO 7.1, linear_nao_paper 4.0, FNO 7.0, TFNO 9.4, oracle 6.2)
    "elasticity": dict(n_pairs=30, n_queries=10, batch_size=16, samples_per_epoch=450, in_context_layers=1,
                       n_test_samples_per_system=4,
                       epochs=dict(nips=8, nips_paper=10, nao=6, nao_paper=9, linear_nao=6, linear_nao_paper=10,
                                   fno=6, tfno=4, fno_oracle=6)),
    "tiny": dict(n_pairs=6, n_queries=2, batch_size=4, samples_per_epoch=12, in_context_layers=1,
                 n_test_samples_per_system=4, epochs=2),
}
#: task files: the Darcy preset's budget (the same samples per epoch, whatever the number of
#: training systems); context and queries adapt to the pairs per system
FILE_SETTINGS = dict(PRESET_SETTINGS["darcy"], n_pairs=None, n_queries=None)


def default_sampling(n_pairs_per_system, n_pairs=None, n_queries=None):
    """Context size ``d`` and queries ``q`` for systems of ``P`` pairs: ``d = 40, q = 10``
    when ``P >= 50``, else ``q = max(1, P // 5)`` and ``d = P - q``; given values are kept
    (a missing one takes what the other leaves)."""
    P = n_pairs_per_system
    if n_pairs is None and n_queries is None:
        n_queries = 10 if P >= 50 else max(1, P // 5)
    if n_pairs is None:
        n_pairs = min(40, P - n_queries) if P >= 50 else P - n_queries
    if n_queries is None:
        n_queries = min(10, P - n_pairs)
    return n_pairs, n_queries


def complete_settings(settings, tasks):
    """A preset's settings completed for ``tasks``: context size and queries for its pairs
    per system (:func:`default_sampling`), draws per system for its number of training
    systems (``samples_per_epoch`` in all, unless given). Returns the completed settings
    and the sampling arguments of :func:`~nips_plugin.training.run.train_run`."""
    settings = dict(settings)
    settings["n_pairs"], settings["n_queries"] = default_sampling(tasks.n_pairs, settings["n_pairs"],
                                                                  settings["n_queries"])
    if not settings.get("draws_per_system"):  # many random draws of every system per epoch
        settings["draws_per_system"] = math.ceil(settings["samples_per_epoch"] / len(tasks.indices("train")))
    not_sampling = ("in_context_layers", "epochs", "samples_per_epoch", "calibrated_budget_seconds")
    return settings, {k: v for k, v in settings.items() if k not in not_sampling}


def epochs_for(settings, name):
    """Epochs of model ``name`` under ``settings`` (an int for all, or a dict per model; a
    model the preset has not been calibrated for gets the median of the others)."""
    epochs = settings["epochs"]
    if not isinstance(epochs, dict):
        return epochs
    return epochs.get(name, sorted(epochs.values())[len(epochs) // 2])


COLUMNS = [("model", "model"), ("params", "params"), ("id_rel_l2", "unseen rel L2"),
           ("vs_lstsq", "x lstsq"), ("ood_rel_l2", "OOD rel L2"), ("ctx_rel_l2", "context rel L2"),
           ("kernel_rel_err", "kernel err"), ("log_correlation", "field log-corr"),
           ("recovery_rel_err", "field err"), ("epochs", "epochs"), ("train_seconds", "train s"), ("peak_mem_mb", "peak MB")]


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


@torch.no_grad()
def predictor_error(predictor, loader, layout, on_context=False):
    """Mean relative L2 error per query function of a no-learning predictor over a loader's
    batches, physical units, float64; ``on_context``: of its reconstruction of the context's
    own responses instead (the papers' metric, :func:`context_reconstruction_error`)."""
    d, cf, cu = layout.n_pairs, layout.in_components, layout.out_components
    metric = QueryRelL2Loss(out_components=cu)
    errors = []
    for batch in loader:
        f, u, f_query = unpack_context(batch["x"].double(), d, cf, cu)
        target = u if on_context else batch["y"].double()
        pred = predictor.predict(f, u, f if on_context else f_query)
        errors.append(metric.per_function(pred.reshape(target.shape), target))
    return torch.cat(errors).mean().item()


def least_squares_error(loader, layout, mode="least_squares"):
    """The no-learning floor: :func:`predictor_error` of in-context least squares
    (``mode="symmetric"``: with the symmetric completion)."""
    from ..interpret import LeastSquaresPredictor
    predictor = LeastSquaresPredictor(layout.n_pairs, layout.in_components, layout.out_components,
                                      loader.dataset[0]["x"].ndim - 1, mode)
    return predictor_error(predictor, loader, layout)


def _evaluate(name, run, loader, layout):
    """Unseen-system error of a trained run or of a no-learning row (its predictor) on one loader."""
    if name in BASELINES:
        return predictor_error(run, loader, layout)
    return test_error(run["model"], run["processor"], loader)


def with_clean_targets(loader, clean_loader):
    """The batches of ``loader`` (noisy responses) with the targets of ``clean_loader``, the
    same test draws of the noise-free tasks (test draws depend on the seed and the systems,
    not on the values; checked on the systems)."""
    batches = []
    for noisy, clean in zip(loader, clean_loader, strict=True):
        if not torch.equal(noisy["system"], clean["system"]):
            raise RuntimeError("noisy and clean test loaders drew different systems")
        batches.append({**noisy, "y": clean["y"]})
    return batches


def noise_error(loader, clean_loader, layout):
    """Mean relative L2 error of the noisy query responses against the clean ones: what one
    noisy measurement gives, on the test draws."""
    metric = QueryRelL2Loss(out_components=layout.out_components)
    return torch.cat([metric.per_function(noisy["y"], clean["y"])
                      for noisy, clean in zip(loader, with_clean_targets(loader, clean_loader))]).mean().item()


def superresolution_errors(runs, preset, resolutions, seed, settings, progress=True):
    """Zero-shot super-resolution: the unseen systems regenerated on finer grids, evaluated
    with the models and data processors trained on the preset's grid.
    Models tied to their training grid (the ``*_paper`` rows' per-token input
    affine) get None.

    The generators sample the same continuous systems and inputs at any resolution,
    so only the grid changes. Models contracting attention in the quadratic order
    are evaluated up to :data:`QUADRATIC_MAX_POINTS` grid points.
    ``runs`` may hold the no-learning rows (their predictors).

    Returns
    -------
    dict
        model -> {resolution (str): error or None}
    """
    errors = {name: {} for name in runs}
    for n in resolutions:
        tasks = load_data(preset, resolution=n, seed=seed, progress=progress)
        for name, run in runs.items():
            quadratic = name not in BASELINES and getattr(run["model"], "attention", None) == "quadratic"
            if _grid_tied(run) or (quadratic and math.prod(tasks.grid_shape) > QUADRATIC_MAX_POINTS):
                errors[name][str(n)] = None
                continue
            mode = "oracle" if name == "fno_oracle" else "incontext"
            _, loaders, processor = load_incontext(
                tasks, settings["n_pairs"], settings["n_queries"], batch_size=settings["batch_size"], seed=seed,
                mode=mode, n_test_samples_per_system=settings["n_test_samples_per_system"])
            errors[name][str(n)] = _evaluate(name, run, loaders["id"], processor.layout)
    return errors


def interpretation_metrics(rows, runs, tasks, settings, seed):
    """Add ``kernel_rel_err``, ``kernel_rel_err_span``, ``recovery_rel_err``,
    ``log_correlation`` (and ``phase_accuracy`` for two-phase fields) to the rows of the
    in-context models and of the no-learning rows; return the classical (PDE known, no
    learning) recovery errors from the same contexts, per noise level."""
    from ..interpret import InContextPredictor, kernel_metrics
    systems = tasks.indices("test")
    classical = None
    for row in rows:
        name = row["model"]
        if name in BASELINES:
            predictor = runs[name]
        elif name in IN_CONTEXT_MODELS:
            predictor = InContextPredictor(runs[name]["model"], runs[name]["processor"])
        else:
            continue
        noise = (0.0, 0.01, 0.1) if classical is None else ()
        metrics = kernel_metrics(predictor, tasks, systems, settings["n_pairs"], seed=seed, noise_levels=noise)
        for key in ("kernel_rel_err", "kernel_rel_err_span", "recovery_rel_err", "log_correlation",
                    "phase_accuracy"):
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


def _model_overrides(name, settings):
    return {"n_layers": settings["in_context_layers"]} if name in IN_CONTEXT_MODELS else {}


def calibrate_epochs(name, tasks, settings, budget_seconds, device="cpu", seed=0, n_batches=4):
    """Epochs of model ``name`` whose training takes about ``budget_seconds`` on this machine.

    Times ``n_batches`` training batches after one warm-up batch (data loading,
    preprocessing, forward, loss, backward, AdamW step, as in an epoch of the
    Trainer) and multiplies the median by the batches per epoch.

    Parameters
    ----------
    name : str
    tasks : TaskSet
    settings : dict
        Completed benchmark settings (:func:`complete_settings`).
    budget_seconds : float
    device : str
    seed : int
    n_batches : int

    Returns
    -------
    epochs : int
        At least 1.
    epoch_seconds : float
        The estimated time of one epoch.
    """
    from .profiling import time_call, train_step_fn
    mode = "oracle" if name == "fno_oracle" else "incontext"
    loader, _, processor = load_incontext(
        tasks, settings["n_pairs"], settings["n_queries"], batch_size=settings["batch_size"], seed=seed,
        mode=mode, n_test_samples_per_system=1,
        n_train_samples_per_epoch=settings["draws_per_system"] * len(tasks.indices("train")))
    torch.manual_seed(seed)
    model = build_model(name, processor.layout, len(tasks.grid_shape), n_hidden=processor.n_hidden,
                        tasks=tasks, **_model_overrides(name, settings)).to(device)
    processor = processor.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), **optimizer_defaults(name))
    loss = QueryRelL2Loss(out_components=processor.layout.out_components)
    batches = itertools.cycle(loader)

    def step():
        sample = processor.preprocess(next(batches))
        train_step_fn(model, sample["x"], sample["y"], loss, optimizer)()

    epoch_seconds = time_call(step, device, warmup=1, repeat=n_batches) * len(loader)
    return max(1, round(budget_seconds / epoch_seconds)), epoch_seconds


def _optional(what, step, progress):
    """Run an optional step of the benchmark; its failure is a one-line warning, never a lost run."""
    try:
        return step()
    except Exception as err:  # noqa: BLE001  (any failure: the table is already written)
        message = str(err).splitlines()[0] if str(err) else ""
        print(f"[benchmark] warning: {what} failed ({type(err).__name__}: {message}); "
              "the table is written without it", file=sys.stderr, flush=True)
        return None


def _write_results(results, out):
    write_json(results, out / "results.json")
    (out / "results.md").write_text(results_table(results))


def _grid_tied(run):
    """Whether a trained in-context model is tied to its training grid (per-token affine)."""
    return isinstance(run, dict) and run["config"]["model"].get("input_norm") == "token_affine"


def benchmark_seed(tasks, names, settings, out, *, seed=0, budget_seconds=None, device="cpu", resume=False,
                   preset=None, superresolution=(), progress=True, clean_tasks=None):
    """One seed of the benchmark: train ``names`` on ``tasks`` into ``out`` and evaluate.

    The table (``results.json`` / ``results.md``) is written as soon as every
    model is trained and evaluated on the unseen systems; the optional steps
    (kernels and hidden fields, zero-shot super-resolution on ``superresolution``
    grids of ``preset``, figures) then add to it, and a failing one is a
    one-line warning.

    Parameters
    ----------
    tasks : TaskSet
    names : sequence of str
        Models to train (exactly these).
    settings : dict
        Benchmark settings (a preset's, with overrides); ``epochs`` an int or a dict per model.
    out : pathlib.Path
    seed : int
    budget_seconds : float, optional
        Set every model's epochs by :func:`calibrate_epochs` on this machine.
    device, resume, progress
        As for :func:`run_benchmark`.
    preset : str, optional
        The generated preset (for super-resolution); None for a task file.
    superresolution : sequence of int
    clean_tasks : TaskSet, optional
        The noise-free tasks of noisy ``tasks``: every row also gets ``clean_rel_l2``
        (noisy contexts, clean query responses), the results ``noise_rel_l2``.

    Returns
    -------
    dict
        What ``results.json`` holds.
    """
    started = time.perf_counter()
    settings, sampling = complete_settings(settings, tasks)
    check_sampling(tasks, settings["n_pairs"], settings["n_queries"])
    if budget_seconds is not None:
        settings["epochs"], settings["calibrated_budget_seconds"] = {}, budget_seconds
        for name in names:
            epochs, epoch_seconds = calibrate_epochs(name, tasks, settings, budget_seconds, device, seed)
            settings["epochs"][name] = epochs
            if progress:
                print(f"[benchmark] {name}: {epoch_seconds:.2g} s per epoch here -> {epochs} epochs "
                      f"in {budget_seconds:g} s", flush=True)
    asymmetry = tasks.response_asymmetry()
    # JSON has no infinity: None where symmetry has no meaning (c_f != c_u)
    results_extra = {"response_asymmetry": asymmetry if math.isfinite(asymmetry) else None}
    symmetric = asymmetry < SYMMETRY_TOLERANCE
    local_operator = resolve_local_operator("auto", tasks, settings["n_pairs"])
    results_extra["local_operator"] = local_operator
    baselines = (["lstsq"] + (["lstsq_sym"] if symmetric else []) + ["lstsq_laplace"]
                 + (["lstsq_local"] if local_operator else []))
    rows, runs = [], {}
    for name in names:
        if progress:
            print(f"[benchmark] training {name} ({names.index(name) + 1}/{len(names)})", flush=True)
        run_dir = out / name
        run = train_run(name, tasks, run_dir, device=device, seed=seed, progress=progress,
                        epochs=epochs_for(settings, name), model_overrides=_model_overrides(name, settings),
                        resume=resume and (run_dir / "checkpoint" / "manifest.json").exists(), **sampling)
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
            "epochs": len(history),
            "train_seconds": float(np.sum([h["seconds"] for h in history])),
            "peak_mem_mb": train_step_memory_mb(model, processor, run["test_loaders"]["id"], device),
        }
        rows.append(row)
        runs[name] = run
        if progress:
            print("[benchmark] " + ", ".join(f"{k}={_fmt(v, k)}" for k, v in row.items()), flush=True)

    # the no-learning rows, on the same test draws
    _, loaders, processor = load_incontext(tasks, settings["n_pairs"], settings["n_queries"],
                                           batch_size=settings["batch_size"], seed=seed,
                                           n_test_samples_per_system=settings["n_test_samples_per_system"])
    for name in baselines:
        runs[name] = baseline_predictor(name, processor.layout, len(tasks.grid_shape), symmetric, local_operator)
        rows.append({"model": name, "params": 0,
                     **{f"{split}_rel_l2": _evaluate(name, runs[name], loader, processor.layout)
                        for split, loader in loaders.items()},
                     "ctx_rel_l2": predictor_error(runs[name], loaders["id"], processor.layout, on_context=True),
                     "epochs": 0})
    if clean_tasks is not None:
        _, clean_loaders, _ = load_incontext(clean_tasks, settings["n_pairs"], settings["n_queries"],
                                             batch_size=settings["batch_size"], seed=seed,
                                             n_test_samples_per_system=settings["n_test_samples_per_system"])
        results_extra.update(noise_level=tasks.attrs.get("noise_level"),
                             noise_rel_l2=noise_error(loaders["id"], clean_loaders["id"], processor.layout))
        for row in rows:
            noisy = loaders["id"] if row["model"] in BASELINES else runs[row["model"]]["test_loaders"]["id"]
            row["clean_rel_l2"] = _evaluate(row["model"], runs[row["model"]],
                                            with_clean_targets(noisy, clean_loaders["id"]), processor.layout)
    floor = next(row["id_rel_l2"] for row in rows if row["model"] == "lstsq")
    for row in rows:
        if row.get("id_rel_l2") is not None:
            row["vs_lstsq"] = row["id_rel_l2"] / floor

    results = {"preset": preset or tasks.attrs.get("name", "task file"), "device": str(device),
               "machine": machine_description(device), "seed": seed,
               "rule": "equal training time" if isinstance(settings["epochs"], dict) else "equal epochs",
               "budget_seconds": settings.get("calibrated_budget_seconds", BUDGET_SECONDS),
               "calibrated_here": "calibrated_budget_seconds" in settings, "settings": settings,
               "grid_shape": list(tasks.grid_shape), "rows": rows, **results_extra}
    results["wall_seconds"] = time.perf_counter() - started
    _write_results(results, out)  # the table first: what follows is optional

    if tasks.attrs.get("pde") in ("darcy", "elasticity") and tasks.params:
        if len(tasks.grid_shape) != 2:
            results["interpretation"] = f"not available for {len(tasks.grid_shape)}-D grids (2-D only)"
            if progress:
                print(f"[benchmark] kernels and hidden fields: {results['interpretation']}", flush=True)
        else:
            if progress:
                print("[benchmark] kernels vs exact Green's operators, hidden-field recovery", flush=True)
            classical = _optional("interpretation",
                                  lambda: interpretation_metrics(rows, runs, tasks, settings, seed), progress)
            if classical is not None:
                results["classical_recovery"] = classical
    if superresolution:
        if progress:
            print(f"[benchmark] zero-shot super-resolution on {tuple(superresolution)} grids", flush=True)
        superres = _optional("super-resolution", lambda: superresolution_errors(
            runs, preset, superresolution, seed, settings, progress), progress)
        for row in rows if superres else ():
            row["superres_rel_l2"] = superres[row["model"]]
    from .plots import plot_learning_curves, plot_predictions
    trained = {name: run for name, run in runs.items() if name not in BASELINES}
    _optional("learning-curve figure", lambda: plot_learning_curves(trained, out / "learning_curves.png",
                                                                    floor=floor), progress)
    _optional("prediction figure", lambda: plot_predictions(trained, out / "predictions.png"), progress)
    results["wall_seconds"] = time.perf_counter() - started
    results["finished"] = True
    _write_results(results, out)
    return results


def _mean_std(values):
    """Mean and sample standard deviation over seeds of numbers, or of dicts of them
    (recursively); equal values (and strings) are kept with spread 0 (None for strings), and
    a value missing (None) in any seed gives None."""
    first = values[0]
    if isinstance(first, dict):
        pairs = {k: _mean_std([v.get(k) if v else None for v in values]) for k in first}
        return {k: m for k, (m, _) in pairs.items()}, {k: sd for k, (_, sd) in pairs.items()}
    if any(v is None for v in values):
        return None, None
    if all(v == first for v in values):
        return first, (None if isinstance(first, (str, bool)) else 0.0)
    if isinstance(first, (str, bool)):
        return None, None
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1))


def aggregate_seeds(per_seed):
    """One result from the results of several seeds: every row's numbers are the mean over
    the seeds, with their sample standard deviation under ``<key>_std``; ``per_seed`` keeps
    each seed's rows."""
    rows = []
    for model in (row["model"] for row in per_seed[0]["rows"]):
        seed_rows = [next(r for r in res["rows"] if r["model"] == model) for res in per_seed]
        row = {"model": model}
        for key in seed_rows[0]:
            if key != "model":
                row[key], spread = _mean_std([r.get(key) for r in seed_rows])
                row[f"{key}_std"] = spread
        rows.append(row)
    results = {key: value for key, value in per_seed[0].items() if key not in ("seed", "rows", "wall_seconds")}
    if per_seed[0].get("classical_recovery"):
        results["classical_recovery"], _ = _mean_std([res.get("classical_recovery") for res in per_seed])
    results.update(seeds=[res["seed"] for res in per_seed], rows=rows,
                   wall_seconds=float(sum(res["wall_seconds"] for res in per_seed)),
                   per_seed=[{"seed": res["seed"], "rows": res["rows"], "wall_seconds": res["wall_seconds"]}
                             for res in per_seed])
    return results


def run_benchmark(preset="darcy", data=None, models=DEFAULT_MODELS, epochs=None, device="cpu",
                  out="runs/benchmark", seed=0, seeds=None, budget_seconds=None, force=False, resume=False,
                  progress=True, noise=0.0, **overrides):
    """Train and compare models; write results (see module docstring).

    Parameters
    ----------
    preset : str
        Generated data preset (``darcy``, ``elasticity``, ``tiny``); ignored with ``data``.
    data : str, optional
        A task file instead of a preset (the Darcy preset's budget; context size and
        queries from :func:`default_sampling` unless given).
    models : sequence of str
        Models to compare, exactly these (see :data:`nips_plugin.training.zoo.MODELS`;
        ``fno_oracle`` needs hidden fields).
    epochs : int, optional
        Epochs for every model (default: the preset's equal-time budget).
    device : str
    out : str
        Output folder (refused if it exists and is not empty, unless ``force`` or ``resume``).
    seed : int
        Data draws, initialisation and test batches; the same seed gives the same numbers.
    seeds : sequence of int, optional
        Run the whole benchmark once per seed (in ``out/seed<k>``; the data of a preset
        are generated with each seed too) and report, per row, the mean over the
        seeds and the sample standard deviation (``<key>_std``). Replaces ``seed``.
    budget_seconds : float, optional
        Instead of the preset's fixed epochs, time a few training batches of every
        model on this machine and give it the epochs that take about this long
        (:func:`calibrate_epochs`; calibrated on the first seed, the same epochs for the others).
    force : bool
        Overwrite ``out``.
    resume : bool
        Continue an interrupted benchmark in ``out``: finished seeds and models are
        loaded, the interrupted model resumes from its last finished epoch.
    noise : float
        Relative Gaussian noise on every response the models train and are evaluated on
        (:func:`~nips_plugin.data.noise.add_response_noise`, seeded by the seed). When > 0,
        each row also gets ``clean_rel_l2`` (noisy contexts, clean query responses) and
        the results ``noise_rel_l2`` (one noisy measurement's error); no super-resolution.
    **overrides
        ``n_pairs``, ``n_queries``, ``batch_size``, ``draws_per_system`` (default: enough
        for the preset's ``samples_per_epoch``),
        ``n_test_samples_per_system``, ``in_context_layers`` (``n_layers`` of
        NIPS / NAO / LinearNAO).

    Returns
    -------
    dict
        What ``results.json`` holds.
    """
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise UserError(f"unknown model(s) {', '.join(unknown)}; expected some of {', '.join(MODELS)}")
    if not models:
        raise UserError("no model to train: --models needs at least one name")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda requested but no CUDA device is available")
    if not data and preset not in PRESET_SETTINGS:
        raise UserError(f"unknown preset {preset!r}; expected one of {sorted(PRESET_SETTINGS)} or --data FILE")
    seeds = [seed] if seeds is None else [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise UserError(f"seeds must be distinct non-negative integers, got {seeds}")
    if budget_seconds is not None and (epochs is not None or budget_seconds <= 0):
        raise UserError("--budget-seconds needs a positive number of seconds and no --epochs")
    settings = dict(FILE_SETTINGS if data else PRESET_SETTINGS[preset])
    settings.update({k: v for k, v in overrides.items() if v is not None})
    if epochs is not None:
        settings["epochs"] = epochs
    out = prepare_dir(out, force=force, resume=resume)
    patch_spectral_conv()  # FNO/TFNO exact on odd grids (neuraloperator 2.0.0 bug)
    per_seed = []
    for k, s in enumerate(seeds):
        seed_out = out if len(seeds) == 1 else out / f"seed{s}"
        finished = seed_out / "results.json"
        if resume and finished.exists() and json.loads(finished.read_text()).get("finished"):
            per_seed.append(json.loads(finished.read_text()))
            continue
        if progress and len(seeds) > 1:
            print(f"[benchmark] seed {s} ({k + 1}/{len(seeds)})", flush=True)
        clean = load_data(preset, data, seed=s, progress=progress)
        tasks = add_response_noise(clean, noise, s) if noise else clean
        if "fno_oracle" in models and not tasks.params:
            raise UserError("fno_oracle needs hidden parameter fields in the tasks")
        # the epochs calibrated on the first seed serve every seed
        first = per_seed[0]["settings"] if per_seed else {}
        seed_settings = dict(settings, **{k: first[k] for k in ("epochs", "calibrated_budget_seconds")
                                          if k in first})
        per_seed.append(benchmark_seed(
            tasks, list(models), seed_settings, seed_out, seed=s, device=device, resume=resume,
            budget_seconds=None if per_seed else budget_seconds, progress=progress,
            preset=Path(data).name if data else preset, clean_tasks=clean if noise else None,
            superresolution=() if data or noise else SUPERRESOLUTION.get(preset, ())))
    if len(seeds) == 1:
        return per_seed[0]
    results = aggregate_seeds(per_seed)
    _write_results(results, out)
    return results


#: columns shown with fewer decimals than the errors
_DECIMALS = {"vs_lstsq": 2, "train_seconds": 1, "peak_mem_mb": 1}


def _fmt(v, key=None):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{_DECIMALS.get(key, 4 if abs(v) < 10 else 1)}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def _cell(row, key, sub=None):
    """A table cell: the value, with ``± std`` when the row is a mean over seeds."""
    value, spread = row.get(key), row.get(f"{key}_std")
    if sub is not None:
        value, spread = (value or {}).get(sub), (spread or {}).get(sub)
    if spread and isinstance(value, float):
        return f"{_fmt(value, key)} ± {_fmt(float(spread), key)}"
    return _fmt(value, key)


def gap_exceeds_spread(a, b, key="id_rel_l2"):
    """Whether two rows' means differ by more than their two standard deviations summed."""
    return abs(a[key] - b[key]) > (a.get(f"{key}_std") or 0.0) + (b.get(f"{key}_std") or 0.0)


def comparison_notes(results):
    """What the rows say against each other: which gaps to NIPS exceed the spread over
    seeds, and the papers' configurations compared (the NIPS paper reports NIPS 26%
    more accurate than the best NAO variant)."""
    rows = {row["model"]: row for row in results["rows"] if row.get("id_rel_l2") is not None}
    notes = []
    if "seeds" in results and "nips" in rows:
        beyond = [name for name in rows if name != "nips" and gap_exceeds_spread(rows["nips"], rows[name])]
        within = [name for name in rows if name not in beyond and name != "nips"]
        notes.append(f"Over seeds {results['seeds']}: the gap to nips exceeds the two spreads summed for "
                     f"{', '.join(beyond) or 'no row'}; within the spread: {', '.join(within) or 'no row'}.")
    for suffix, what in (("_paper", "papers' configurations"), ("", "enhanced models")):
        naos = [name + suffix for name in ("nao", "linear_nao") if name + suffix in rows]
        if "nips" + suffix in rows and naos:
            best = min(naos, key=lambda name: rows[name]["id_rel_l2"])
            gain = 1 - rows["nips" + suffix]["id_rel_l2"] / rows[best]["id_rel_l2"]
            notes.append(f"{what.capitalize()}: nips{suffix} is {abs(gain):.0%} "
                         f"{'more' if gain >= 0 else 'less'} accurate than the best NAO variant "
                         f"({best}){'; the gap exceeds the spread' if 'seeds' in results and gap_exceeds_spread(rows['nips' + suffix], rows[best]) else ''}.")
    return notes


def results_table(results):
    """The results as a Markdown table with a header line naming data, device and machine."""
    seeds = f"seeds {', '.join(map(str, results['seeds']))} (mean ± std)" if "seeds" in results \
        else f"seed {results['seed']}"
    where = "on this machine" if results.get("calibrated_here") else "on a 2-core CPU"
    rule = (f"{results['rule']} (epochs per model calibrated to about {results['budget_seconds']:g} s {where}; "
            "the same draws for every model)") if results["rule"] == "equal training time" else results["rule"]
    head = (f"Benchmark `{results['preset']}` on {results['device']} ({results['machine']}), "
            f"{seeds}, grid {'x'.join(map(str, results['grid_shape']))}, "
            f"d={results['settings']['n_pairs']} context pairs, q={results['settings']['n_queries']} queries.\n"
            f"Rule: {rule}.\n"
            "Errors: mean relative L2 per query function on unseen systems (physical units); "
            "x lstsq: unseen error over in-context least squares' (no learning).\n\n")
    resolutions = list(results["rows"][0].get("superres_rel_l2") or {}) if results["rows"] else []
    columns = COLUMNS + ([("clean_rel_l2", "unseen vs clean")] if "noise_rel_l2" in results else [])
    titles = [title for _, title in columns] + [f"unseen @{n}x{n}" for n in resolutions]
    lines = ["| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]
    for row in results["rows"]:
        cells = [_cell(row, key) for key, _ in columns]
        cells += [_cell(row, "superres_rel_l2", n) for n in resolutions]
        lines.append("| " + " | ".join(cells) + " |")
    table = head + "\n".join(lines) + "\n"
    notes = comparison_notes(results)
    if "noise_rel_l2" in results:
        level = results["noise_level"]
        what = "Noisy responses" if level is None else f"{level:.0%} relative Gaussian noise on every response"
        notes.append(f"{what}; unseen vs clean: "
                     f"noisy contexts, noise-free query responses; one noisy measurement's error: "
                     f"{results['noise_rel_l2']:.4f}.")
    if resolutions:
        notes.append("Super-resolution '-': `*_paper` rows (tied to their training grid) and models "
                     f"in the quadratic attention order above {QUADRATIC_MAX_POINTS} grid points.")
    if results.get("interpretation"):
        notes.append(f"Kernels and hidden fields: {results['interpretation']}.")
    classical = results.get("classical_recovery")
    if classical:
        shown = ", ".join(f"{float(k):.0%}: {v:.4f}" for k, v in classical["rel_err"].items())
        carried = results.get("noise_level") or 0.0
        on_top = (f" (on top of the data's {carried:.0%}; the fit is regularised for both)"
                  if carried else "")
        notes.append(f"Hidden field recovered with the PDE known (least squares on the discretised "
                     f"equation, same {results['settings']['n_pairs']} context pairs, no learning): "
                     f"relative error with noise added to the responses{on_top}: {shown}.")
    if results.get("wall_seconds"):
        notes.append(f"Wall time: {results['wall_seconds'] / 60:.1f} min.")
    return table + "".join(f"\n{note}\n" for note in notes)
