"""Measurement noise on a task set's responses.

A measured response is the exact one plus independent Gaussian noise at every
grid value, scaled per function (relative noise):

.. math::

    \\tilde u_{s,p} = u_{s,p} + \\sigma_{s,p}\\,\\varepsilon_{s,p},\\qquad
    \\sigma_{s,p} = \\ell\\,\\mathrm{rms}(u_{s,p}),\\qquad \\varepsilon \\sim N(0, I),

with :math:`\\mathrm{rms}(u_{s,p})` the root mean square over all components and
grid values of that one response. The expected relative L2 error of one noisy
measurement, :math:`\\|\\tilde u - u\\| / \\|u\\|`, is then :math:`\\ell` (to
:math:`O(\\ell / \\sqrt{n})` for ``n`` values per function).
"""

from dataclasses import replace

import numpy as np


def add_response_noise(tasks, level, seed=0):
    """A copy of ``tasks`` whose responses carry relative Gaussian noise of size ``level``.

    Parameters
    ----------
    tasks : TaskSet
        Exact data; left unchanged.
    level : float
        :math:`\\ell \\ge 0`, the noise's standard deviation relative to each response's
        RMS (module docstring); 0 returns an unchanged copy.
    seed : int
        Seed of the noise (non-negative).

    Returns
    -------
    TaskSet
        The same inputs, hidden fields, split and attributes (plus ``noise_level``
        and ``noise_seed``), and responses ``u + sigma * eps`` ``[S, P, c_u, *grid]``
        float32.
    """
    if not (np.isfinite(level) and level >= 0):
        raise ValueError(f"noise level must be a finite number >= 0, got {level!r}")
    u = tasks.u.astype(np.float64)
    axes = tuple(range(2, u.ndim))
    sigma = float(level) * np.sqrt(np.mean(np.square(u), axis=axes, keepdims=True))
    noisy = u + sigma * np.random.default_rng(seed).standard_normal(u.shape)
    return replace(tasks, f=tasks.f.copy(), u=noisy, params=dict(tasks.params), split=tasks.split.copy(),
                   attrs={**tasks.attrs, "noise_level": float(level), "noise_seed": int(seed)})
