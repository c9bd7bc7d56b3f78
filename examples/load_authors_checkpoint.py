"""
Load one of the authors' released NAO checkpoints and run it on generated Darcy data
===================================================================================

The NAO authors released three trained Darcy models (``NAO/best_model_dk40_darcy_gtou.ckpt``,
``..._deeper.ckpt`` and ``best_model_dk20_darcy_gtou_small.ckpt`` in their
Nonlocal-Attention-Operator repository, MIT licence). This script

* imports one with :func:`nips_plugin.compat.from_reference_state_dict` (the
  variant, ``"nao_darcy_gtou"``, is inferred from the tensors) and prints its
  parameter count and configuration;
* builds a context of one unseen system from the package's Darcy generator,
  normalised as the authors did (one scalar mean and standard deviation per
  field, over the whole training set), and predicts held-out responses;
* extracts the kernel ``M`` the model builds from that context (``u ≈ M f``).

The checkpoints were trained on the authors' own Darcy data set (21x21 grid,
100 permeability fields with 100 sources each), not on this package's
generator: do not expect them to be accurate here. The ``dk40`` models map
normalised sources to solutions in the authors' physical units; the script
shipped next to the ``dk20_small`` one puts the solutions first and
normalises its output, so its direction and units are uncertain.

Usage: ``python examples/load_authors_checkpoint.py [CHECKPOINT]`` with a
``.ckpt`` of the authors' NAO folder; by default, the copy of
``best_model_dk40_darcy_gtou.ckpt`` kept with the tests.
"""
import inspect
import sys
from pathlib import Path

import numpy as np
import torch
from neuralop.utils import count_model_params

from nips_plugin import pack_context
from nips_plugin.compat import from_reference_state_dict
from nips_plugin.data.families import make_darcy_tasks
from nips_plugin.interpret import darcy_greens

DEFAULT = (Path(__file__).resolve().parents[1] / "tests" / "models" / "data" / "authors_reference"
           / "released_best_model_dk40_darcy_gtou.pt")

path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
state = torch.load(path, map_location="cpu", weights_only=True)
state = state.get("state_dict", state)  # the test copy wraps the checkpoint with its recorded output
model = from_reference_state_dict(state)
# the constructor arguments neuraloperator records (and save_checkpoint stores), in signature order
config = {k: model._init_kwargs[k] for k in inspect.signature(type(model)).parameters}
print(f"{path.name}: {type(model).__name__}, {count_model_params(model):,} parameters")
for key, value in config.items():
    print(f"  {key:<20} {value}")

# --- a context from the package's Darcy generator (21x21, like the checkpoints' grid)
d, (n, _) = model.layout.n_pairs, config["grid_shape"]
tasks = make_darcy_tasks(n=n, progress=False)  # cached after the first call
train, test = tasks.indices("train"), tasks.indices("test")
f_all, u_all = torch.from_numpy(tasks.f), torch.from_numpy(tasks.u)
# the authors' GaussianNormalizer: one mean and one (unbiased) std per field over the training set
f_mean, f_std = f_all[train].mean(), f_all[train].std() + 1e-5
u_mean, u_std = u_all[train].mean(), u_all[train].std() + 1e-5

system = test[0]
f, u = f_all[system], u_all[system]                 # [100 pairs, 1, n, n]
context, queries = slice(0, d), slice(d, d + 10)    # d context pairs, 10 held-out loadings
x = pack_context(((f[context] - f_mean) / f_std)[None], ((u[context] - u_mean) / u_std)[None],
                 ((f[queries] - f_mean) / f_std)[None])
with torch.no_grad():
    pred = model(x)[0]                              # [10, n, n]: the dk40 models answer in u's units
truth = u[queries, 0]


def rel(a, b):
    return (torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b)).item()


scale = (pred * truth).sum() / pred.square().sum()
print(f"\nunseen system {system}, context of {d} pairs, 10 held-out loadings:")
print(f"  {'relative L2 error of the predicted responses':<52} {rel(pred, truth):.3f}")
print(f"  {f'same after the best single rescaling ({scale:.3g}x)':<52} {rel(scale * pred, truth):.3f}")

# --- the kernel the model builds from this context: u_hat = M f_normalised
with torch.no_grad():
    M = model.extract_kernel(x)[0]                  # [N, N], quadrature weights included
    via_kernel = (M @ ((f[queries] - f_mean) / f_std).reshape(10, -1).T).T.reshape(pred.shape)
print(f"\nkernel M: {tuple(M.shape)}; M f reproduces the forward pass to "
      f"{rel(via_kernel, pred):.1e}")
G = darcy_greens(tasks.params["permeability"][system])   # exact: u = G f in physical units
M_phys = M.double().numpy() / f_std.item()               # the linear part of f -> M (f - mean) / std
print(f"  distance to this system's exact Green's operator |M/std_f - G| / |G| = "
      f"{np.linalg.norm(M_phys - G) / np.linalg.norm(G):.2f} "
      f"(trained on other data: not expected to be small)")
