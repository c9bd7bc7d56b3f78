"""An experiment, not yet in the package: a 5-point local operator fitted to a *noisy* context by
its output error, and how well it predicts the clean query responses.

The package's local operator (:mod:`nips_plugin.layers.local_operator`) is an equation-error fit,
``A u_i ~ f_i`` per node: exact on clean data, useless under noise (the stencil differentiates the
responses twice, amplifying the noise by about ``h^-2``), so the benchmark drops it there. The
output error,

.. math::  \\min_A \\sum_i \\|A^{-1} f_i - \\tilde u_i\\|^2 ,

measures the misfit where the noise is, in the responses. It is fitted here by Levenberg-Marquardt
(dense Jacobian products: small grids only), from the Dirichlet Laplacian scaled to the context,
on interior nodes (zero boundary assumed), for a single-component task file::

    python benchmarks/other_darcy_law.py            # writes otherlaw.h5
    python benchmarks/noisy_output_error_fit.py otherlaw.h5 0.03

prints, per unseen system, the error of the predicted query responses against the clean ones
next to the noise's own error (the number NIPS has to beat: ``nips-plugin benchmark --data
otherlaw.h5 --noise 0.03``).
"""
import argparse
import time

import numpy as np
import scipy.sparse as sp

from nips_plugin.data import load_tasks
from nips_plugin.data.noise import add_response_noise
from nips_plugin.layers.local_operator import stencil_offsets


def star_pattern(n):
    """Rows and columns of the 5-point stencil on the ``(n-2)^2`` interior nodes."""
    m = n - 2
    index = np.arange(m * m).reshape(m, m)
    i, j = (a.ravel() for a in np.meshgrid(np.arange(m), np.arange(m), indexing="ij"))
    rows, cols = [], []
    for di, dj in stencil_offsets(2, "star"):
        keep = (0 <= i + di) & (i + di < m) & (0 <= j + dj) & (j + dj < m)
        rows.append(index[i[keep], j[keep]])
        cols.append(index[i[keep] + di, j[keep] + dj])
    return np.concatenate(rows), np.concatenate(cols), m * m


def output_error_fit(F, U, n, max_iter=50):
    """``A^{-1}`` of the star operator minimising ``||A^{-1} F - U||`` (``F, U``: ``[N_int, d]``)."""
    rows, cols, size = star_pattern(n)
    laplacian = np.where(rows == cols, 4.0, -1.0)

    def state(values):
        A = sp.csr_matrix((values, (rows, cols)), shape=(size, size)).toarray()
        inverse = np.linalg.inv(A)
        W = inverse @ F
        return inverse, W, W - U, float(np.sum((W - U) ** 2))

    W0 = state(laplacian)[1]
    values = laplacian * (W0 * W0).sum() / (W0 * U).sum()      # the Laplacian at the context's scale
    inverse, W, R, loss = state(values)
    damping = 1e-3
    for _ in range(max_iter):
        # Gauss-Newton normal matrix and gradient of the entries of A, without forming J
        JTJ = (inverse.T @ inverse)[np.ix_(rows, rows)] * (W @ W.T)[np.ix_(cols, cols)]
        gradient = -(inverse.T @ R @ W.T)[rows, cols]
        diagonal = np.diag(np.diag(JTJ))
        while damping < 1e8:
            trial = values + np.linalg.solve(JTJ + damping * diagonal, -gradient)
            new = state(trial)
            if new[3] < loss:
                break
            damping *= 10
        else:
            break
        converged = loss - new[3] < 1e-6 * loss
        values, (inverse, W, R, loss), damping = trial, new, max(damping / 3, 1e-9)
        if converged:
            break
    return inverse


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("noise", type=float)
    parser.add_argument("--n-pairs", type=int, default=40)
    parser.add_argument("--systems", type=int, default=4)
    args = parser.parse_args()
    clean = load_tasks(args.path)
    noisy = add_response_noise(clean, args.noise, 0)
    n, d = clean.grid_shape[0], args.n_pairs

    def interior(a):
        return np.asarray(a, np.float64)[:, 0, 1:-1, 1:-1].reshape(len(a), -1).T

    errors, noise = [], []
    for s in clean.indices("test")[:args.systems]:
        start = time.perf_counter()
        inverse = output_error_fit(interior(clean.f[s, :d]), interior(noisy.u[s, :d]), n)
        truth = interior(clean.u[s, d:])
        scale = np.linalg.norm(truth, axis=0)
        errors.append(np.mean(np.linalg.norm(inverse @ interior(clean.f[s, d:]) - truth, axis=0) / scale))
        noise.append(np.mean(np.linalg.norm(interior(noisy.u[s, d:]) - truth, axis=0) / scale))
        print(f"system {s}: queries vs clean {errors[-1]:.4f}, the noise {noise[-1]:.4f} "
              f"({time.perf_counter() - start:.1f} s)", flush=True)
    print(f"mean: queries vs clean {np.mean(errors):.4f}, the noise {np.mean(noise):.4f}")


if __name__ == "__main__":
    main()
