"""Figures of a benchmark: learning curves and predictions on one unseen system."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from .evaluate import predict_batch  # noqa: E402


def _show(ax, field, title, cmap="viridis"):
    """A 1-D field as a curve, 2-D as an image, 3-D as its middle slice."""
    field = field.detach().cpu().float()
    while field.ndim > 2:
        field = field[field.shape[0] // 2]
    if field.ndim == 1:
        ax.plot(field.numpy())
    else:
        im = ax.imshow(field.numpy().T, origin="lower", cmap=cmap)
        plt.colorbar(im, ax=ax, fraction=0.046)
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_title(title, fontsize=8)


def plot_learning_curves(runs, path, floor=None):
    """Training loss and unseen-system errors against training time for every model
    (models train for different numbers of epochs under the equal-time rule), with the
    no-learning least-squares error ``floor`` as a dashed line."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, run in runs.items():
        seconds = np.cumsum([h["seconds"] for h in run["history"]])
        axes[0].semilogy(seconds, [h["train_loss"] for h in run["history"]], ".-", label=name)
        axes[1].semilogy(seconds, [h.get("id_rel_l2", float("nan")) for h in run["history"]], ".-", label=name)
    if floor is not None:
        axes[1].axhline(floor, color="k", ls="--", lw=1, label="lstsq (no learning)")
    axes[0].set_title("training loss (normalised units)")
    axes[1].set_title("unseen systems: mean rel. L2 per query")
    for ax in axes:
        ax.set_xlabel("training time (s)")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@torch.no_grad()
def _first_prediction(run):
    """Physical-units input batch, truth, prediction and system of the first test batch of a run."""
    batch = next(iter(run["test_loaders"]["id"]))
    out, y = predict_batch(run["model"], run["processor"], batch)
    return batch["x"], y.cpu(), out.cpu(), int(batch["system"][0])


def plot_predictions(runs, path, query=0):
    """For one unseen system: a context pair, the query input, its true response, and
    each model's prediction with its error map (first component)."""
    layout = next(iter(runs.values()))["processor"].layout
    d, cf, cu = layout.n_pairs, layout.in_components, layout.out_components
    names = list(runs)
    fig, axes = plt.subplots(2, 2 + len(names), figsize=(2.6 * (2 + len(names)), 5))
    truth = None
    for col, name in enumerate(names, start=2):
        _, y, out, system = _first_prediction(runs[name])
        if truth is None:
            context_run = next(iter(r for n, r in runs.items() if n != "fno_oracle"), runs[name])
            x_ctx = _first_prediction(context_run)[0]
            _show(axes[0, 0], x_ctx[0, 0], "context input f_1")
            _show(axes[1, 0], x_ctx[0, d * cf], "context response u_1")
            _show(axes[0, 1], x_ctx[0, d * (cf + cu) + query * cf], "query input f")
            truth = y[0, query * cu]
            _show(axes[1, 1], truth, "true response u")
        pred = out[0, query * cu]
        rel = ((pred - truth).norm() / truth.norm()).item()
        _show(axes[0, col], pred, f"{name}: prediction")
        _show(axes[1, col], pred - truth, f"{name}: error ({rel:.1%})", cmap="RdBu_r")
    fig.suptitle(f"unseen system {system}: prediction of one query response", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
