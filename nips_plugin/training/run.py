"""One training run of one model: data, loaders, model, Trainer, and a self-describing folder.

A run folder holds everything needed to use the model later
(:meth:`nips_plugin.InContextPredictor.from_run` reads it)::

    run_dir/
      config.json                    model (arch + constructor args), data and optimiser settings
      data_processor.pt              the fitted InContextDataProcessor (weights_only-safe)
      model_state_dict.pt            final model, neuraloperator checkpoint format
      model_metadata.pkl             (BaseModel.save_checkpoint / from_checkpoint)
      history.json                   per-epoch training loss and test metrics
      checkpoint/                    resumable training state after the last finished epoch
"""

import json
import shutil
from pathlib import Path

import torch
from neuralop.models.base_model import BaseModel, get_model
from zencfg.bunch import Bunch

from ..data.families import make_darcy_tasks, make_elasticity_tasks
from ..data.loaders import InContextDataProcessor, load_incontext
from ..data.tasks import TaskSet, load_tasks
from ..baselines import PriorResidualProcessor
from ..baselines.local_operator import OUTPUT_ERROR_OPERATORS
from .trainer import fit, is_main_process, write_json
from .zoo import model_config, optimizer_defaults, resolve_prior, row_prior


class UserError(Exception):
    """A problem with the user's input, reported as one line by the command line."""


#: generated data presets: name -> (generator, its arguments, default resolution)
PRESETS = {
    "darcy": (make_darcy_tasks, {}, 21),
    "elasticity": (make_elasticity_tasks, {}, 29),
    # seconds-long smoke-test data
    "tiny": (make_darcy_tasks, dict(n_pairs=12, n_train=6, n_test=2, n_ood=2), 9),
}


def load_data(preset="darcy", path=None, resolution=0, seed=0, progress=True):
    """The tasks of a preset (generated, cached) or of a task file.

    Parameters
    ----------
    preset : str
        A key of :data:`PRESETS`; ignored when ``path`` is given.
    path : str, optional
        A task file (see :mod:`nips_plugin.data.tasks`).
    resolution : int
        Grid points per side of a generated preset (0: the preset's default).
    seed : int
    progress : bool
    """
    if path is not None:
        if not Path(path).exists():
            raise UserError(f"task file not found: {path}")
        try:
            return load_tasks(path)
        except (ValueError, OSError) as err:
            raise UserError(str(err)) from err
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)} or --data FILE")
    generate, kwargs, default_n = PRESETS[preset]
    return generate(n=resolution or default_n, seed=seed, progress=progress, **kwargs)


def prepare_dir(path, force=False, resume=False):
    """Create an output folder; refuse to overwrite a non-empty one unless ``force``."""
    path = Path(path)
    if path.exists() and any(path.iterdir()) and not resume:
        if not force:
            raise UserError(f"output folder {path} exists and is not empty (use --force to overwrite, "
                            f"or --resume to continue a run)")
        if is_main_process():
            shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def check_sampling(tasks, n_pairs, n_queries):
    if n_pairs < 1 or n_queries < 0:
        raise UserError(f"need n_pairs >= 1 and n_queries >= 0, got {n_pairs} and {n_queries}")
    if n_pairs + n_queries > tasks.n_pairs:
        raise UserError(f"each sample needs {n_pairs} context + {n_queries} query pairs, but the "
                        f"systems have only {tasks.n_pairs} pairs each")


#: distinct training draws per training system for a model with an output-error local
#: operator as its prior (:data:`~nips_plugin.baselines.local_operator.OUTPUT_ERROR_OPERATORS`): its fit costs
#: about a second per new 21x21 context, so the epochs cycle through this pool (fitted once)
OUTPUT_ERROR_POOL = 4


def train_run(model_name, tasks, run_dir, *, n_pairs, n_queries, batch_size=16,
              n_test_samples_per_system=4, draws_per_system=0, epochs=30, device="cpu", seed=0, lr=0.0,
              weight_decay=-1.0, model_overrides=None, resume=False, mixed_precision=False,
              distributed=False, progress=True, prior=None):
    """Train one model on ``tasks`` into ``run_dir`` (see the module docstring).

    ``fno_oracle`` trains FNO on (hidden field, query input) pairs instead of a context.
    ``lr <= 0`` / ``weight_decay < 0`` take the model's tuned defaults.
    ``draws_per_system``: random draws (samples) of each training system per
    epoch (0: the loader's default, about one pass over its pairs).

    Returns
    -------
    dict
        ``model`` (the trained module, unwrapped), ``processor``, ``test_loaders``,
        ``history`` (per-epoch metrics), ``config`` (what config.json holds).
    """
    if not isinstance(tasks, TaskSet):
        raise TypeError("tasks must be a TaskSet (see nips_plugin.data.load_tasks)")
    check_sampling(tasks, n_pairs, n_queries)
    mode = "oracle" if model_name == "fno_oracle" else "incontext"
    if mode == "oracle" and not tasks.params:
        raise UserError("fno_oracle needs hidden parameter fields in the tasks")
    run_dir = Path(run_dir)
    train_loader, test_loaders, processor = load_incontext(
        tasks, n_pairs, n_queries, batch_size=batch_size, seed=seed, mode=mode,
        n_test_samples_per_system=n_test_samples_per_system, distributed=distributed,
        n_train_samples_per_epoch=draws_per_system * len(tasks.indices("train")) or None)
    n_dim = len(tasks.grid_shape)
    cfg = model_config(model_name, processor.layout, n_dim, n_hidden=processor.n_hidden, tasks=tasks,
                       **(model_overrides or {}))
    if row_prior(model_name) is None:
        prior = None
    elif prior is None:
        prior = resolve_prior(row_prior(model_name), tasks, n_pairs)
    if prior is not None:  # the row corrects a classical prior: composed in the data processor
        processor = PriorResidualProcessor.around(processor, prior)
    if prior in OUTPUT_ERROR_OPERATORS:
        train_loader.dataset.pool = OUTPUT_ERROR_POOL * len(tasks.indices("train"))
    opt = optimizer_defaults(model_name)
    opt = {"lr": lr if lr > 0 else opt["lr"],
           "weight_decay": weight_decay if weight_decay >= 0 else opt["weight_decay"]}
    config = {"name": model_name, "model": dict(cfg), "prior": prior, "optimizer": opt, "epochs": epochs, "seed": seed,
              "data": {"n_pairs": n_pairs, "n_queries": n_queries, "batch_size": batch_size,
                       "draws_per_system": draws_per_system, "pool": train_loader.dataset.pool,
                       "mode": mode, "grid_shape": list(tasks.grid_shape),
                       "n_test_samples_per_system": n_test_samples_per_system,
                       "attrs": {k: v for k, v in tasks.attrs.items()},
                       **({"path": tasks.source} if tasks.source else {})}}
    torch.manual_seed(seed)  # identical initialisation for identical seeds
    model = get_model(Bunch({"model": cfg}))
    if is_main_process():
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(config, run_dir / "config.json")
        processor.save(run_dir / "data_processor.pt")

    checkpoint = run_dir / "checkpoint" / "manifest.json"
    done = resume and checkpoint.exists() and json.loads(checkpoint.read_text())["next_epoch"] >= epochs
    if resume and not checkpoint.exists():
        raise UserError(f"nothing to resume in {run_dir} (no checkpoint/manifest.json)")
    if done:  # a finished run: load its final state, nothing left to train
        model.load_state_dict(torch.load(run_dir / "checkpoint" / "model_state_dict.pt", weights_only=False))
        history = json.loads((run_dir / "history.json").read_text())
    else:
        trainer = fit(model, processor, train_loader, test_loaders, run_dir, epochs, device=device,
                      out_components=tasks.out_components, resume=resume,
                      mixed_precision=mixed_precision, distributed=distributed, progress=progress, **opt)
        history = trainer.history
    model = model.module if hasattr(model, "module") else model
    if is_main_process():
        model.save_checkpoint(run_dir, "model")
        write_json(history, run_dir / "history.json")
    return {"model": model, "processor": processor, "test_loaders": test_loaders,
            "history": history, "config": config}


def load_run(run_dir, map_location="cpu"):
    """The trained model, data processor and config of a run folder."""
    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    if not config_path.exists():
        raise UserError(f"{run_dir} is not a run folder (no config.json)")
    config = json.loads(config_path.read_text())
    cls = BaseModel._models[config["model"]["model_arch"]]
    model = cls.from_checkpoint(run_dir, "model", map_location=map_location).eval()
    kind = PriorResidualProcessor if config.get("prior") else InContextDataProcessor
    processor = kind.load(run_dir / "data_processor.pt", map_location=map_location)
    return model, processor, config
