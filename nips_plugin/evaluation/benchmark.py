"""Train NIPS, NAO, LinearNAO, FNO and TFNO side by side on the same data and report.

Every row is trained by :func:`~nips_plugin.training.run.train_run` under the
protocol of :mod:`.protocol` (same tasks, draws, loss and Trainer; equal training
time), measured by :mod:`.evaluate` and reported by :mod:`.report`.

Rows (:mod:`nips_plugin.training.zoo`): ``nips``, ``nao`` and ``linear_nao`` are the
papers' models; ``*_enhanced`` adds this package's neural options; ``*_hybrid`` is
the enhanced model trained as a correction of a classical prior fitted to each
context; FNO and TFNO see the same packed channels; ``fno_oracle`` is FNO given the
hidden field. The no-learning rows (:data:`~.evaluate.BASELINES`: in-context least
squares, its symmetric completion, the context-scaled inverse Laplacian, the fitted
local operator where the training data choose one) are evaluated on the same test
draws; ``x best floor`` is each row's error over the best of them.

Output folder::

    out/results.json   {"preset", "device", "rows": [...], ...}
    out/results.md     the table
    out/<model>/       each model's run folder (checkpoint, data processor, config, history)
    out/learning_curves.png, out/predictions.png
"""

import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from neuralop.utils import count_model_params

from ..compat import patch_spectral_conv
from ..data.loaders import load_incontext
from ..data.noise import add_response_noise
from ..training.run import UserError, check_sampling, load_data, prepare_dir, train_run
from ..training.zoo import IN_CONTEXT_MODELS, MODELS, SYMMETRY_TOLERANCE, resolve_local_operator, row_prior
from .evaluate import (BASELINES, baseline_predictor, context_reconstruction_error, evaluate_row,
                       interpretation_metrics, noise_error, predictor_error, superresolution_errors,
                       train_step_memory_mb, with_clean_targets)
from .protocol import (BUDGET_SECONDS, DEFAULT_MODELS, FILE_SETTINGS, PRESET_SETTINGS, SUPERRESOLUTION,
                       calibrate_epochs, complete_settings, epochs_for, machine_description, model_overrides)
from .report import aggregate_seeds, best_floor, fmt, write_results


def _optional(what, step, progress):
    """Run an optional step of the benchmark; its failure is a one-line warning, never a lost run."""
    try:
        return step()
    except Exception as err:  # noqa: BLE001  (any failure: the table is already written)
        message = str(err).splitlines()[0] if str(err) else ""
        print(f"[benchmark] warning: {what} failed ({type(err).__name__}: {message}); "
              "the table is written without it", file=sys.stderr, flush=True)
        return None


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
    asymmetry = tasks.response_asymmetry()
    # JSON has no infinity: None where symmetry has no meaning (c_f != c_u)
    results_extra = {"response_asymmetry": asymmetry if math.isfinite(asymmetry) else None}
    symmetric = asymmetry < SYMMETRY_TOLERANCE
    local_operator = resolve_local_operator("auto", tasks, settings["n_pairs"])
    results_extra["local_operator"] = local_operator
    # the classical prior of each *_hybrid row: the local operator, else the scaled inverse Laplacian
    priors = {name: (local_operator or "laplace") if row_prior(name) else None for name in names}
    if budget_seconds is not None:
        settings["epochs"], settings["calibrated_budget_seconds"] = {}, budget_seconds
        for name in names:
            epochs, epoch_seconds = calibrate_epochs(
                name, tasks, settings, budget_seconds, device, seed, prior=priors[name])
            settings["epochs"][name] = epochs
            if progress:
                print(f"[benchmark] {name}: {epoch_seconds:.2g} s per epoch here -> {epochs} epochs "
                      f"in {budget_seconds:g} s", flush=True)
    baselines = (["lstsq"] + (["lstsq_sym"] if symmetric else []) + ["lstsq_laplace"]
                 + (["lstsq_local"] if local_operator else []))
    rows, runs = [], {}
    for name in names:
        if progress:
            print(f"[benchmark] training {name} ({names.index(name) + 1}/{len(names)})", flush=True)
        run_dir = out / name
        run = train_run(name, tasks, run_dir, device=device, seed=seed, progress=progress,
                        epochs=epochs_for(settings, name), model_overrides=model_overrides(name, settings),
                        prior=priors[name],
                        resume=resume and (run_dir / "checkpoint" / "manifest.json").exists(), **sampling)
        model, processor, history = run["model"], run["processor"], run["history"]
        model.eval()
        final = history[-1]
        row = {
            "model": name,
            "params": count_model_params(model),
            "id_rel_l2": final.get("id_rel_l2"),
            "ood_rel_l2": final.get("ood_rel_l2"),
            # the papers' metric; not defined here for a row correcting a prior
            "ctx_rel_l2": (context_reconstruction_error(model, processor, run["test_loaders"]["id"],
                                                        processor.layout)
                           if name in IN_CONTEXT_MODELS and not run["config"]["prior"] else None),
            "epochs": len(history),
            "train_seconds": float(np.sum([h["seconds"] for h in history])),
            "peak_mem_mb": train_step_memory_mb(model, processor, run["test_loaders"]["id"], device),
        }
        rows.append(row)
        runs[name] = run
        if progress:
            print("[benchmark] " + ", ".join(f"{k}={fmt(v, k)}" for k, v in row.items()), flush=True)

    # the no-learning rows, on the same test draws
    _, loaders, processor = load_incontext(tasks, settings["n_pairs"], settings["n_queries"],
                                           batch_size=settings["batch_size"], seed=seed,
                                           n_test_samples_per_system=settings["n_test_samples_per_system"])
    for name in baselines:
        runs[name] = baseline_predictor(name, processor.layout, len(tasks.grid_shape), symmetric, local_operator)
        rows.append({"model": name, "params": 0,
                     **{f"{split}_rel_l2": evaluate_row(name, runs[name], loader, processor.layout)
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
            row["clean_rel_l2"] = evaluate_row(row["model"], runs[row["model"]],
                                            with_clean_targets(noisy, clean_loaders["id"]), processor.layout)
    lstsq = next(row["id_rel_l2"] for row in rows if row["model"] == "lstsq")
    floor_name, floor = best_floor(rows)
    for row in rows:
        if row.get("id_rel_l2") is not None:
            row["vs_lstsq"] = row["id_rel_l2"] / lstsq
            row["vs_floor"] = row["id_rel_l2"] / floor
    results_extra["best_floor"] = floor_name

    results = {"preset": preset or tasks.attrs.get("name", "task file"), "device": str(device),
               "machine": machine_description(device), "seed": seed,
               "rule": "equal training time" if isinstance(settings["epochs"], dict) else "equal epochs",
               "budget_seconds": settings.get("calibrated_budget_seconds", BUDGET_SECONDS),
               "calibrated_here": "calibrated_budget_seconds" in settings, "settings": settings,
               "grid_shape": list(tasks.grid_shape), "rows": rows, **results_extra}
    results["wall_seconds"] = time.perf_counter() - started
    write_results(results, out)  # the table first: what follows is optional

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
    write_results(results, out)
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
    write_results(results, out)
    return results
