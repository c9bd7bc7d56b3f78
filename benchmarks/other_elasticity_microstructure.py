"""Write ``ellipses.h5``: two-phase plane-strain elasticity on a microstructure the package does not
generate (random elliptical inclusions, not digits), for measurements
(``nips-plugin benchmark --data ellipses.h5 --models nips``).

Each system: a matrix of modulus 1 with 2-5 stiff elliptical inclusions of modulus 8 (random
centres, semi-axes 0.08-0.25, orientations), Poisson ratio 0.3; loads are two-component random
fields of length 0.12 and smoothness 1.5. 50 training and 10 unseen systems of 80 pairs on 29x29
nodes, solved by ``solve_elasticity`` (the package's verified Q1 solver; the microstructure and
loads are this script's).
"""
import numpy as np

from nips_plugin.data import save_tasks
from nips_plugin.data.fields import random_load
from nips_plugin.data.solvers import solve_elasticity

n, n_systems, n_pairs = 29, 60, 80
rng = np.random.default_rng(2026)
x, y = np.meshgrid(np.linspace(0, 1, n), np.linspace(0, 1, n), indexing="ij")
E = np.ones((n_systems, n, n))
for s in range(n_systems):
    for _ in range(rng.integers(2, 6)):
        cx, cy = rng.uniform(0.15, 0.85, 2)
        a, b = rng.uniform(0.08, 0.25, 2)
        t = rng.uniform(0, np.pi)
        xr = (x - cx) * np.cos(t) + (y - cy) * np.sin(t)
        yr = -(x - cx) * np.sin(t) + (y - cy) * np.cos(t)
        E[s][(xr / a) ** 2 + (yr / b) ** 2 <= 1] = 8.0
f = np.stack([random_load(n, n_pairs, (2026, 2, s), n_components=2, length_scale=0.12, smoothness=1.5)
              for s in range(n_systems)])
u = np.stack([solve_elasticity(E[s], f[s].astype(np.float32).astype(np.float64)) for s in range(n_systems)])
save_tasks("ellipses.h5", f, u, params={"modulus": E}, split=["train"] * 50 + ["test"] * 10,
           pde="elasticity", domain="[0,1]^2")
print(f"wrote ellipses.h5 ({n_systems} systems x {n_pairs} pairs, {n}x{n}, E in {{1, 8}})")
