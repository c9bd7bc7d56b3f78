"""Write ``otherlaw.h5``: a log-normal Darcy law the package does not generate, for measurements
under noise (``nips-plugin benchmark --data otherlaw.h5 --models nips --noise 0.03``).

Permeability ``3 * 2.5^g`` with ``g`` a Gaussian field of length 0.35 and smoothness 1 (the
package's log-normal law: median 6, factor 2, length 0.15, smoothness 1.5); sources of length
0.1, smoothness 1.5 and a uniform part of standard deviation 0.3 (the package's: 0.15, 2, 0.5).
50 training and 10 unseen systems of 100 pairs on 21x21 nodes, solved by ``solve_darcy``.
"""
import numpy as np

from nips_plugin.data import save_tasks
from nips_plugin.data.fields import gaussian_random_field, lognormal_field, random_load
from nips_plugin.data.solvers import solve_darcy

n, n_systems, n_pairs = 21, 60, 100
b = lognormal_field(gaussian_random_field(n, n_systems, 123, length_scale=0.35, smoothness=1.0),
                    median=3.0, sigma=float(np.log(2.5)))
f = np.stack([random_load(n, n_pairs, (123, 2, s), length_scale=0.1, smoothness=1.5, offset_std=0.3)
              for s in range(n_systems)])
u = np.stack([solve_darcy(b[s], f[s].astype(np.float32).astype(np.float64)) for s in range(n_systems)])
save_tasks("otherlaw.h5", f, u, params={"permeability": b}, split=["train"] * 50 + ["test"] * 10,
           pde="darcy", domain="[0,1]^2")
print(f"wrote otherlaw.h5 ({n_systems} systems x {n_pairs} pairs, {n}x{n})")
