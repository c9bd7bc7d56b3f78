"""The benchmark's measurements: errors of trained rows and of the no-learning rows on the
same test draws, noise, super-resolution, kernels and hidden fields, memory.

Reported errors are the mean relative L2 error per query function on unseen systems, in
physical units, of the model after its last epoch (no selection on test data).
"""

import math

import torch

from ..baselines import LeastSquaresPredictor
from ..data.loaders import QueryRelL2Loss, load_incontext
from ..layers.context import unpack_context
from ..training.run import load_data
from ..training.zoo import IN_CONTEXT_MODELS
from .protocol import QUADRATIC_MAX_POINTS


#: no-learning rows: name -> (context fit, with the shared operator's starting point, with the
#: local operator): in-context least squares, its symmetric completion, (``lstsq_laplace``) the
#: enhanced in-context models before training: the data's fit (symmetric where measured so) plus
#: the context-scaled inverse Dirichlet Laplacian on the rest, and (``lstsq_local``, only where the
#: training data choose a local operator, :func:`~nips_plugin.training.zoo.resolve_local_operator`,
#: the output-error fit of noisy data included) the same with each context's fitted local
#: operator in its place
#: (:class:`~nips_plugin.baselines.LeastSquaresPredictor`)
BASELINES = {"lstsq": ("least_squares", False, False), "lstsq_sym": ("symmetric", False, False),
             "lstsq_laplace": (None, True, False), "lstsq_local": (None, True, True)}


def baseline_predictor(name, layout, n_dim, symmetric, local_operator=None):
    """The predictor of no-learning row ``name`` (:data:`BASELINES`) for data measured
    ``symmetric`` or not, with the data's ``local_operator``."""
    mode, prior, local = BASELINES[name]
    mode = mode or ("symmetric" if symmetric else "least_squares")
    return LeastSquaresPredictor(layout.n_pairs, layout.in_components, layout.out_components, n_dim, mode,
                                 shared_operator_modes=12 if prior else None,
                                 local_operator=local_operator if local else None)


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
    predictor = LeastSquaresPredictor(layout.n_pairs, layout.in_components, layout.out_components,
                                      loader.dataset[0]["x"].ndim - 1, mode)
    return predictor_error(predictor, loader, layout)


def evaluate_row(name, run, loader, layout):
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
    Models tied to their training grid (a per-token input affine) get None.

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
            if grid_tied(run) or (quadratic and math.prod(tasks.grid_shape) > QUADRATIC_MAX_POINTS):
                errors[name][str(n)] = None
                continue
            mode = "oracle" if name == "fno_oracle" else "incontext"
            _, loaders, processor = load_incontext(
                tasks, settings["n_pairs"], settings["n_queries"], batch_size=settings["batch_size"], seed=seed,
                mode=mode, n_test_samples_per_system=settings["n_test_samples_per_system"])
            errors[name][str(n)] = evaluate_row(name, run, loaders["id"], processor.layout)
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


def grid_tied(run):
    """Whether a trained in-context model is tied to its training grid (per-token affine)."""
    return isinstance(run, dict) and run["config"]["model"].get("input_norm") == "token_affine"
