"""Write ``channels.h5``: high-contrast channelised Darcy flow solved on a 3x finer grid than it is
stored on (``nips-plugin benchmark --data channels.h5``), a law no preset or example generates.

Permeability 20 in channels (where a Gaussian field of length 0.3 is within 0.35 of zero: thin,
connected, meandering bands) and 1 elsewhere, smoothed by nothing; sources of length 0.1 with a
uniform part of standard deviation 0.3, built on the fine grid. Each system is solved by
``solve_darcy`` on 61x61 nodes and every third node is kept: 21x21 nodes, 50 training and 10
unseen systems of 60 pairs. No stencil on the stored grid is exact, so no no-learning row is.
"""
import numpy as np

from nips_plugin.data import save_tasks
from nips_plugin.data.fields import gaussian_random_field, random_load
from nips_plugin.data.solvers import solve_darcy

fine, n_systems, n_pairs = 61, 60, 60
g = gaussian_random_field(fine, n_systems, 2026, length_scale=0.3, smoothness=1.0)
b = np.where(np.abs(g) < 0.35, 20.0, 1.0)
f = np.stack([random_load(fine, n_pairs, (2026, 3, s), length_scale=0.1, smoothness=1.5, offset_std=0.3)
              for s in range(n_systems)])
u = np.stack([solve_darcy(b[s], f[s]) for s in range(n_systems)])
keep = (Ellipsis, slice(None, None, 3), slice(None, None, 3))
save_tasks("channels.h5", f[keep], u[keep], params={"permeability": b[keep]},
           split=["train"] * 50 + ["test"] * 10, pde="darcy", domain="[0,1]^2")
print(f"wrote channels.h5 ({n_systems} systems x {n_pairs} pairs, solved on {fine}x{fine}, stored on "
      f"{(fine - 1) // 3 + 1}x{(fine - 1) // 3 + 1})")
