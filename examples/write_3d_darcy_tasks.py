"""Write a 3-D Darcy task file with a solver of your own, system by system (``TaskWriter``).

    python examples/write_3d_darcy_tasks.py darcy3d.h5        # 48 systems x 80 pairs, 11^3 nodes
    nips-plugin benchmark --data darcy3d.h5 --models nips

A law the package does not generate: ``-div(b grad u) = f`` on ``[0, 1]^3``,
``u = 0`` on the boundary, 7-point flux-form finite differences with harmonic
face means (second order: the maximum error against ``sin(pi x) sin(pi y)
sin(pi z)`` falls 4x from 11^3 to 21^3 nodes); log-normal permeability
``exp(0.8 g)`` and sources ``g'`` from Gaussian random fields with other
correlation lengths than any preset. The last sixth of the systems are unseen.
"""

import sys

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from nips_plugin.data import TaskWriter


def gaussian_field(n, rng, length, power):
    """A unit-variance random field on n^3 nodes with spectrum (1 + (pi l |k|)^2)^(-power/2)."""
    k = np.fft.fftfreq(2 * n) * 2 * n
    k2 = sum(axis ** 2 for axis in np.meshgrid(k, k, k, indexing="ij"))
    noise = rng.standard_normal((2 * n,) * 3) + 1j * rng.standard_normal((2 * n,) * 3)
    g = np.fft.ifftn((1 + (np.pi * length) ** 2 * k2) ** (-power / 2) * noise).real[:n, :n, :n]
    return g / g.std()


def darcy_operator(b):
    """Sparse matrix of -div(b grad .) on the interior nodes, and the interior mask."""
    n = b.shape[0]
    index = -np.ones(b.shape, dtype=int)
    index[1:-1, 1:-1, 1:-1] = np.arange((n - 2) ** 3).reshape((n - 2,) * 3)
    rows, cols, vals, diag = [], [], [], np.zeros((n - 2) ** 3)
    for axis in range(3):
        lo, hi = [slice(None)] * 3, [slice(None)] * 3
        lo[axis], hi[axis] = slice(0, n - 1), slice(1, n)
        bp, bq = b[tuple(lo)], b[tuple(hi)]
        face = 2 * bp * bq / (bp + bq) * (n - 1) ** 2
        for p, q in ((index[tuple(lo)], index[tuple(hi)]), (index[tuple(hi)], index[tuple(lo)])):
            np.add.at(diag, p[p >= 0], face[p >= 0])
            both = (p >= 0) & (q >= 0)
            rows.append(p[both]), cols.append(q[both]), vals.append(-face[both])
    rows.append(np.arange(len(diag))), cols.append(np.arange(len(diag))), vals.append(diag)
    A = sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(len(diag),) * 2)
    return A, index >= 0


def main(path="darcy3d.h5", n=11, n_systems=48, n_pairs=80, seed=3):
    rng = np.random.default_rng(seed)
    n_test = n_systems // 6
    with TaskWriter(path, pde="darcy", domain="[0,1]^3", law="lognormal-3d (examples/write_3d_darcy_tasks.py)") as out:
        for s in range(n_systems):
            b = np.exp(0.8 * gaussian_field(n, rng, length=0.3, power=3.0))
            A, interior = darcy_operator(b)
            lu = splu(A)
            f = np.stack([gaussian_field(n, rng, length=0.12, power=2.5) for _ in range(n_pairs)])
            u = np.zeros_like(f)
            u[:, interior] = lu.solve(f[:, interior].T.copy()).T
            out.append(f[:, None].astype(np.float32), u[:, None].astype(np.float32),
                       {"permeability": b.astype(np.float32)}, split="test" if s >= n_systems - n_test else "train")
    print(f"wrote {path}: {n_systems} systems x {n_pairs} pairs on {n}^3 nodes")


if __name__ == "__main__":
    main(*sys.argv[1:2])
