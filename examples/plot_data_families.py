"""
The generated data families
===========================

A *system* is a PDE with a hidden coefficient field; the models see only
input/response pairs of it. The plugin generates two families of systems:

* Darcy flow ``-div(b grad u) = f`` on the unit square, ``u = 0`` on the
  boundary. Hidden: the permeability ``b`` (two-phase 12/3 in distribution,
  log-normal out of distribution). Input: a source ``f``; response: the
  pressure ``u``.
* Plane-strain elasticity ``-div sigma(u) = f``, clamped boundary. Hidden: the
  Young's modulus ``E``, a handwritten digit of stiff material in a soft
  matrix (the held-out digit 9 out of distribution). Input: a body force
  ``f`` (2 components); response: the displacement ``u`` (2 components).

This script generates small versions of both and plots three systems of each
(two training systems and one out-of-distribution system): the hidden field,
one input and its response.

Run ``python examples/plot_data_families.py [output_dir]`` (default
``./figures``); it writes ``darcy.png`` and ``elasticity.png``.
"""
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from nips_plugin.data import make_darcy_tasks, make_elasticity_tasks

# %%
# Generate (cached on disk, seconds the first time): 2 training systems and 1
# out-of-distribution system, 2 input/response pairs each, on a 41x41 grid.
sizes = {"n": 41, "n_pairs": 2, "n_train": 2, "n_test": 0, "n_ood": 1}
darcy = make_darcy_tasks(**sizes)
elasticity = make_elasticity_tasks(**sizes)


# %%
# Arrays are [system, pair, component, x, y] with grid axis 0 along x, so a
# field is drawn transposed with the origin at the bottom left. Vector fields
# are drawn as their magnitude with arrows.
def show(fig, ax, field, title):
    """Draw a [n, n] scalar field, or a [2, n, n] vector field as magnitude and arrows."""
    n = field.shape[-1]
    magnitude = np.linalg.norm(field, axis=0) if field.ndim == 3 else field
    image = ax.imshow(magnitude.T, origin="lower", extent=(0, 1, 0, 1), cmap="viridis")
    if field.ndim == 3:
        step = max(1, n // 12)
        x = np.linspace(0, 1, n)[::step]
        ax.quiver(x, x, field[0, ::step, ::step].T, field[1, ::step, ::step].T, color="white")
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_family(tasks, hidden):
    """One row per system: hidden field, first input, its response."""
    fig, axes = plt.subplots(tasks.n_systems, 3, figsize=(11, 3.3 * tasks.n_systems))
    squeeze = tasks.in_components == 1  # a scalar field has one component
    for s, row in enumerate(axes):
        f, u = tasks.f[s, 0], tasks.u[s, 0]
        show(fig, row[0], tasks.params[hidden][s], f"system {s} ({tasks.split[s]}): {hidden}")
        show(fig, row[1], f[0] if squeeze else f, "input f")
        show(fig, row[2], u[0] if squeeze else u, "response u")
    fig.suptitle(f"{tasks.attrs['pde']}: {tasks.n_pairs} pairs per system, "
                 f"{tasks.grid_shape[0]}x{tasks.grid_shape[1]} grid")
    fig.tight_layout()
    return fig


out = Path(sys.argv[1] if len(sys.argv) > 1 else "figures")
out.mkdir(parents=True, exist_ok=True)
for tasks, hidden in ((darcy, "permeability"), (elasticity, "modulus")):
    path = out / f"{tasks.attrs['pde']}.png"
    plot_family(tasks, hidden).savefig(path, dpi=110)
    print(f"wrote {path}")
