"""The benchmark's protocol: which rows, which data settings, and the equal-time rule.

Every model is trained on the same tasks, the same training draws (in the same order)
and test batches (same seed), with the same loss and neuraloperator Trainer. The rule
is **equal training time**: each preset gives every row the number of epochs that takes
about :data:`BUDGET_SECONDS` on the 2-core CPU machine the presets were calibrated on
(fixed epochs, so the same seed gives the same numbers anywhere; a model with fewer
epochs sees a prefix of the same draws). Epoch times include everything done per batch,
the classical prior's fits of a ``*_hybrid`` row among them.
"""

import itertools
import math
import platform

import torch

from ..baselines import PriorResidualProcessor
from ..data.loaders import QueryRelL2Loss, load_incontext
from ..training.zoo import IN_CONTEXT_MODELS, build_model, optimizer_defaults


#: the papers' models, NIPS with this package's additions and as a correction of a classical
#: prior, FNO, TFNO
DEFAULT_MODELS = ("nips", "nao", "linear_nao", "nips_enhanced", "nips_hybrid", "fno", "tfno")


#: finer grids on which the generated presets are also evaluated (zero-shot super-resolution)
SUPERRESOLUTION = {"darcy": (41, 81), "elasticity": (57,), "tiny": (13,)}


#: models contracting attention in the quadratic order (``attention_order="quadratic"``) are
#: evaluated on grids up to this many points
QUADRATIC_MAX_POINTS = 2000


#: training time per model that the presets' epochs were calibrated to (seconds on
#: the 2-core CPU sandbox, see the module docstring)
BUDGET_SECONDS = 40


#: benchmark settings per preset: sampling, and epochs per row for the equal-time rule
#: (``calibrate_epochs`` on the 2-core sandbox with nothing else running, 2026-12-08, batch 16,
#: 900 samples per epoch, Darcy, s/epoch: nips 1.0, nips_enhanced 1.8, nips_hybrid 4.9 (its
#: prior's fit to each new context included), nao 17 and linear_nao 18 (the authors' MLP W^P on
#: all N^2 point pairs), nao_enhanced 1.6, nao_hybrid 4.7, linear_nao_enhanced 1.4, FNO 2.4,
#: TFNO 3.1, oracle 2.1). The in-context models use one attention layer (the kernel layer) in
#: this budget.
PRESET_SETTINGS = {
    "darcy": dict(n_pairs=40, n_queries=10, batch_size=16, samples_per_epoch=900, in_context_layers=1,
                  n_test_samples_per_system=4,
                  epochs=dict(nips=40, nips_enhanced=22, nips_hybrid=8, nao=2, nao_enhanced=25, nao_hybrid=8,
                              linear_nao=2, linear_nao_enhanced=29, linear_nao_hybrid=8,
                              fno=17, tfno=13, fno_oracle=20)),
    # elasticity (29x29, 2 components; s/epoch of 450 samples: nips 1.4, nips_enhanced 2.1,
    # nips_hybrid 8.3, nao 63, linear_nao 48, nao_enhanced 2.0, nao_hybrid 9.2,
    # linear_nao_enhanced 2.0, linear_nao_hybrid 9.4, FNO 2.2, TFNO 3.0, oracle 2.1)
    "elasticity": dict(n_pairs=30, n_queries=10, batch_size=16, samples_per_epoch=450, in_context_layers=1,
                       n_test_samples_per_system=4,
                       epochs=dict(nips=29, nips_enhanced=19, nips_hybrid=5, nao=1, nao_enhanced=20, nao_hybrid=4,
                                   linear_nao=1, linear_nao_enhanced=20, linear_nao_hybrid=4,
                                   fno=18, tfno=13, fno_oracle=19)),
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


def machine_description(device):
    if str(device).startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def model_overrides(name, settings):
    return {"n_layers": settings["in_context_layers"]} if name in IN_CONTEXT_MODELS else {}


def calibrate_epochs(name, tasks, settings, budget_seconds, device="cpu", seed=0, n_batches=4, prior=None):
    """Epochs of model ``name`` whose training takes about ``budget_seconds`` on this machine.

    Times ``n_batches`` training batches after one warm-up batch (data loading,
    preprocessing, forward, loss, backward, AdamW step, as in an epoch of the
    Trainer; for a row correcting a classical ``prior``, its fits to each context) and
    multiplies the median by the batches per epoch.

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
    prior : str, optional
        The resolved classical prior of a ``*_hybrid`` row.

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
                        tasks=tasks, **model_overrides(name, settings)).to(device)
    if prior is not None:
        processor = PriorResidualProcessor.around(processor, prior)
    processor = processor.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), **optimizer_defaults(name))
    loss = QueryRelL2Loss(out_components=processor.layout.out_components)
    batches = itertools.cycle(loader)

    def step():
        sample = processor.preprocess(next(batches))
        train_step_fn(model, sample["x"], sample["y"], loss, optimizer)()

    epoch_seconds = time_call(step, device, warmup=1, repeat=n_batches) * len(loader)
    return max(1, round(budget_seconds / epoch_seconds)), epoch_seconds
