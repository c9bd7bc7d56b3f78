"""Write ``advection.h5``: steady advection-diffusion, a non-symmetric operator the package does
not generate (``nips-plugin benchmark --data advection.h5 --models nips``).

.. math::

    -\\nabla\\cdot(k \\nabla u) + v \\cdot \\nabla u = f \\text{ on } [0, 1]^2, \\qquad u = 0 \\text{ on the boundary},

with a log-normal diffusivity ``k`` (median 1, factor 2, length 0.3) and a divergence-free
velocity ``v = Pe (d_y psi, -d_x psi)`` from a random stream function ``psi`` (unit RMS speed
times ``Pe = 10``), per system; conservative 5-point diffusion and central advection (cell
Peclet number below 1 on 21x21 nodes), assembled and solved here with scipy. 50 training and 10
unseen systems of 100 pairs.
"""
import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from nips_plugin.data import save_tasks
from nips_plugin.data.fields import gaussian_random_field, lognormal_field, random_load

n, n_systems, n_pairs, peclet = 21, 60, 100, 10.0
h = 1.0 / (n - 1)
k = lognormal_field(gaussian_random_field(n, n_systems, 31, length_scale=0.3, smoothness=1.0),
                    median=1.0, sigma=float(np.log(2.0)))
psi = gaussian_random_field(n, n_systems, 32, length_scale=0.3, smoothness=1.5)


def operator(k, psi):
    """The interior-node matrix of the module docstring's operator."""
    vx, vy = np.gradient(psi, h)[1], -np.gradient(psi, h)[0]      # v = (d_y psi, -d_x psi)
    scale = peclet / np.sqrt(np.mean(vx ** 2 + vy ** 2))
    vx, vy = vx * scale, vy * scale
    m = n - 2
    index = -np.ones((n, n), dtype=int)
    index[1:-1, 1:-1] = np.arange(m * m).reshape(m, m)
    rows, cols, vals = [], [], []
    for i in range(1, n - 1):
        for j in range(1, n - 1):
            r = index[i, j]
            centre = 0.0
            for di, dj, v in ((1, 0, vx[i, j]), (-1, 0, -vx[i, j]), (0, 1, vy[i, j]), (0, -1, -vy[i, j])):
                face = 0.5 * (k[i, j] + k[i + di, j + dj])               # arithmetic face average
                centre += face / h ** 2
                c = index[i + di, j + dj]
                if c >= 0:
                    rows.append(r); cols.append(c); vals.append(-face / h ** 2 + v / (2 * h))
            rows.append(r); cols.append(r); vals.append(centre)
    return sp.csc_matrix((vals, (rows, cols)), shape=(m * m, m * m))


f = np.stack([random_load(n, n_pairs, (31, 2, s), length_scale=0.15, smoothness=1.5, offset_std=0.3)
              for s in range(n_systems)])
u = np.zeros_like(f, dtype=np.float64)
for s in range(n_systems):
    lu = splu(operator(k[s], psi[s]))
    rhs = f[s, :, 0, 1:-1, 1:-1].astype(np.float32).astype(np.float64).reshape(n_pairs, -1)
    u[s, :, 0, 1:-1, 1:-1] = lu.solve(rhs.T).T.reshape(n_pairs, n - 2, n - 2)
save_tasks("advection.h5", f, u, params={"diffusivity": k}, split=["train"] * 50 + ["test"] * 10,
           pde="advection_diffusion", domain="[0,1]^2", peclet=peclet)
print(f"wrote advection.h5 ({n_systems} systems x {n_pairs} pairs, {n}x{n}, Pe {peclet:g})")
