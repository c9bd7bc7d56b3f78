"""Write ``fine.h5``: Darcy flow solved on a finer grid than it is stored on, so no 5-point stencil
on the stored grid is exact (``nips-plugin benchmark --data fine.h5 --models nips``).

Permeability ``2 * 3^g`` with ``g`` a Gaussian field of length 0.25 and smoothness 1.2; sources of
length 0.12, smoothness 1.5 and a uniform part of standard deviation 0.4 (the package's log-normal
law: median 6, factor 2, length 0.15, smoothness 1.5; sources 0.15, 2, 0.5). Each system is solved
by ``solve_darcy`` on 41x41 nodes and every other node is kept: 21x21 nodes, 50 training and 10
unseen systems of 100 pairs. The stored permeability is the fine field at the kept nodes.
"""
import numpy as np

from nips_plugin.data import save_tasks
from nips_plugin.data.fields import gaussian_random_field, lognormal_field, random_load
from nips_plugin.data.solvers import solve_darcy

fine, n_systems, n_pairs = 41, 60, 100
b = lognormal_field(gaussian_random_field(fine, n_systems, 77, length_scale=0.25, smoothness=1.2),
                    median=2.0, sigma=float(np.log(3.0)))
f = np.stack([random_load(fine, n_pairs, (77, 2, s), length_scale=0.12, smoothness=1.5, offset_std=0.4)
              for s in range(n_systems)])
u = np.stack([solve_darcy(b[s], f[s]) for s in range(n_systems)])
keep = (Ellipsis, slice(None, None, 2), slice(None, None, 2))
save_tasks("fine.h5", f[keep], u[keep], params={"permeability": b[keep]},
           split=["train"] * 50 + ["test"] * 10, pde="darcy", domain="[0,1]^2")
print(f"wrote fine.h5 ({n_systems} systems x {n_pairs} pairs, solved on {fine}x{fine}, stored on "
      f"{(fine + 1) // 2}x{(fine + 1) // 2})")
