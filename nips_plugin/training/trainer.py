"""neuraloperator's Trainer, made resumable, observable and distributed-safe.

:class:`RunTrainer` adds to ``neuralop.Trainer`` what a long run needs, without
changing how it trains:

* a progress bar per epoch (batches, loss, ETA) and a per-epoch history of the
  training loss and every evaluation metric, written to ``history.json``;
* a checkpoint after every epoch, written atomically, which records the *next*
  epoch to run (upstream records the last one run and repeats it on resume) and
  loads FNO/TFNO checkpoints too (upstream's ``weights_only`` load rejects their
  metadata);
* DistributedDataParallel for CPU (gloo) and GPU (nccl) processes started by
  ``torchrun`` (upstream passes GPU device ids even for CPU models), with the
  training loss all-reduced so that rank 0 reports global numbers. Test loaders
  are not sharded, so every rank evaluates the whole test set identically.

:func:`fit` wires a model, its data and the optimiser/scheduler defaults.
"""

import json
import os
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
from neuralop import Trainer
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from ..data.loaders import QueryRelL2Loss


def is_main_process():
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _atomic_save(obj, path):
    tmp = Path(str(path) + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def write_json(obj, path):
    """Write JSON atomically (a run interrupted mid-write keeps the previous file)."""
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


class RunTrainer(Trainer):
    """``neuralop.Trainer`` with progress bars, history, exact resume and CPU/GPU DDP.

    Parameters
    ----------
    run_dir : str or Path
        Where ``history.json`` and ``checkpoint/`` go.
    progress : bool, default True
        Show a progress bar per epoch (on rank 0).
    **kwargs
        ``neuralop.Trainer`` arguments; ``use_distributed=True`` wraps the model
        in DDP when a process group is initialised.
    """

    def __init__(self, *, run_dir, progress=True, **kwargs):
        self._distributed = kwargs.pop("use_distributed", False) and dist.is_available() and dist.is_initialized()
        super().__init__(use_distributed=False, **kwargs)
        self.run_dir = Path(run_dir)
        self.progress = progress and is_main_process()
        self.history = []
        self._bar = None

    # ---------------------------------------------------------------- training loop hooks
    def train(self, train_loader, test_loaders, optimizer, scheduler, **kwargs):
        if self._distributed and not isinstance(self.model, DistributedDataParallel):
            self.model = self.model.to(self.device)
            device_ids = [torch.device(self.device).index or 0] if torch.device(self.device).type == "cuda" else None
            self.model = DistributedDataParallel(self.model, device_ids=device_ids)
        self._n_batches = len(train_loader)
        self._train_loader = train_loader
        return super().train(train_loader, test_loaders, optimizer, scheduler, **kwargs)

    def on_epoch_start(self, epoch):
        super().on_epoch_start(epoch)
        sampler = getattr(self._train_loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)  # draws depend on the epoch, also after a resume
        if self.progress:
            self._bar = tqdm(total=self._n_batches, desc=f"epoch {epoch + 1}/{self.n_epochs}",
                             leave=False, dynamic_ncols=True)

    def train_one_batch(self, idx, sample, training_loss):
        loss = super().train_one_batch(idx, sample, training_loss)
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(loss=f"{loss.item() / max(len(sample['y']), 1):.4f}")
        return loss

    def train_one_epoch(self, epoch, train_loader, training_loss):
        train_err, avg_loss, avg_lasso, seconds = super().train_one_epoch(epoch, train_loader, training_loss)
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._distributed:  # global mean over ranks
            stats = torch.tensor([avg_loss * self.n_samples, float(self.n_samples)], dtype=torch.float64)
            dist.all_reduce(stats)
            avg_loss = (stats[0] / stats[1]).item()
        self.history.append({"epoch": epoch + 1, "train_loss": avg_loss, "seconds": seconds})
        return train_err, avg_loss, avg_lasso, seconds

    def evaluate_all(self, *args, **kwargs):
        metrics = super().evaluate_all(*args, **kwargs)
        self.history[-1].update({k: float(v) for k, v in metrics.items()})
        if self.progress:
            shown = ", ".join(f"{k} {v:.4f}" for k, v in self.history[-1].items() if k != "epoch")
            tqdm.write(f"epoch {self.history[-1]['epoch']}/{self.n_epochs}: {shown}")
        return metrics

    # ---------------------------------------------------------------- checkpoints
    def checkpoint(self, save_dir):
        """Save the training state after epoch ``self.epoch`` (rank 0, atomically)."""
        if not is_main_process():
            return
        save_dir = Path(save_dir)
        save_dir.mkdir(parents=True, exist_ok=True)
        model = self.model.module if isinstance(self.model, DistributedDataParallel) else self.model
        _atomic_save(model.state_dict(), save_dir / "model_state_dict.pt")
        _atomic_save(self.optimizer.state_dict(), save_dir / "optimizer.pt")
        _atomic_save(self.scheduler.state_dict(), save_dir / "scheduler.pt")
        write_json(self.history, self.run_dir / "history.json")
        # written last: a checkpoint counts only once everything else is on disk
        write_json({"next_epoch": self.epoch + 1}, save_dir / "manifest.json")

    def resume_state_from_dir(self, save_dir):
        save_dir = Path(save_dir)
        manifest = save_dir / "manifest.json"
        if not manifest.exists():
            raise FileNotFoundError(f"no checkpoint to resume from in {save_dir}")
        model = self.model.module if isinstance(self.model, DistributedDataParallel) else self.model
        # our own files; FNO metadata holds classes, which weights_only loading rejects
        model.load_state_dict(torch.load(save_dir / "model_state_dict.pt", map_location="cpu", weights_only=False))
        self.optimizer.load_state_dict(torch.load(save_dir / "optimizer.pt", map_location="cpu"))
        self.scheduler.load_state_dict(torch.load(save_dir / "scheduler.pt", map_location="cpu"))
        self.start_epoch = json.loads(manifest.read_text())["next_epoch"]
        history = self.run_dir / "history.json"
        self.history = json.loads(history.read_text())[: self.start_epoch] if history.exists() else []


def fit(model, data_processor, train_loader, test_loaders, run_dir, epochs, lr, weight_decay,
        device="cpu", out_components=1, resume=False, mixed_precision=False, distributed=False,
        progress=True):
    """Train ``model`` with AdamW and cosine decay through :class:`RunTrainer`.

    The training loss and evaluation metric are the mean relative L2 error per
    query function (:class:`~nips_plugin.data.loaders.QueryRelL2Loss`; training in
    normalised units, evaluation in physical units). A checkpoint is written
    every epoch under ``run_dir/checkpoint``; ``resume=True`` continues from it.

    Returns
    -------
    trainer : RunTrainer
        ``trainer.history`` holds the per-epoch metrics (keys ``train_loss``,
        ``<loader>_rel_l2``, ``seconds``).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    trainer = RunTrainer(model=model, n_epochs=epochs, device=device, data_processor=data_processor,
                         mixed_precision=mixed_precision, use_distributed=distributed,
                         eval_interval=1, verbose=False, run_dir=run_dir, progress=progress)
    loss = QueryRelL2Loss(out_components=out_components)
    checkpoint_dir = run_dir / "checkpoint"
    with warnings.catch_warnings():
        # the Trainer passes whole batches (y, hidden, system) to FNO, which warns every step
        warnings.filterwarnings("ignore", message=r".*received unexpected keyword arguments.*")
        trainer.train(train_loader, test_loaders, optimizer, scheduler, training_loss=loss,
                      eval_losses={"rel_l2": loss}, save_every=1, save_dir=checkpoint_dir,
                      resume_from_dir=checkpoint_dir if resume else None)
    return trainer
