"""Write ``nonlocal.h5``: NAO's radial-kernel problem in 1-D, a nonlocal law no preset generates
(``nips-plugin benchmark --data nonlocal.h5``).

Each system has a hidden radial kernel of interaction radius ``delta`` in [0.1, 0.25] (4 to 10
nodes of the 41-node grid of [0, 1]),
``K(r) = c (1 - (r/delta)^2)^2 (1 + a cos(2 pi k r / delta))`` for ``r < delta`` (0 beyond),
``c`` log-uniform in [1, 10], ``a`` in [-0.5, 0.5], ``k`` in {1, 2}, and responses
``u(x) = int_0^1 K(|x - y|) f(y) dy`` (``solve_radial_kernel``, trapezoidal rule). Loads are
cosine series with decaying random coefficients plus a random uniform part. 50 training and 10
unseen systems of 60 pairs; the stored hidden field is ``K`` on the grid's distances.
"""
import numpy as np

from nips_plugin.data import save_tasks
from nips_plugin.data.solvers import solve_radial_kernel

n, n_systems, n_pairs = 41, 60, 60
rng = np.random.default_rng(2408)
x = np.linspace(0.0, 1.0, n)
modes = np.arange(16)
f, u, kernels = [], [], []
for s in range(n_systems):
    delta, c = rng.uniform(0.1, 0.25), 10 ** rng.uniform(0, 1)
    a, k = rng.uniform(-0.5, 0.5), rng.integers(1, 3)

    def kernel(r, delta=delta, c=c, a=a, k=k):
        inside = r < delta
        return np.where(inside, c * (1 - (r / delta) ** 2) ** 2 * (1 + a * np.cos(2 * np.pi * k * r / delta)), 0.0)

    coeffs = rng.standard_normal((n_pairs, len(modes))) / (1 + modes) ** 1.5
    loads = coeffs @ np.cos(np.pi * modes[:, None] * x[None]) + 0.3 * rng.standard_normal((n_pairs, 1))
    f.append(loads[:, None])
    u.append(solve_radial_kernel(kernel, loads)[:, None])
    kernels.append(kernel(x))
save_tasks("nonlocal.h5", np.stack(f), np.stack(u), params={"kernel": np.stack(kernels)},
           split=["train"] * 50 + ["test"] * 10, pde="nonlocal_kernel", domain="[0,1]")
print(f"wrote nonlocal.h5 ({n_systems} systems x {n_pairs} pairs, {n} nodes, 1-D radial kernels)")
