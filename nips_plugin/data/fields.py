r"""Random coefficient fields and loadings, defined in the continuum and sampled on any grid.

Every function returns a *continuous* random field evaluated on the nodes
``x_i = i / (n-1)`` of :math:`[0,1]` per axis (array axis 0 is ``x``, as in
:mod:`~nips_plugin.data.solvers`). The randomness is drawn once per
``(seed, sample)`` and never depends on ``n``: the same seed gives the same
field at every resolution, so the ``n = 21`` grid is every other node of the
``n = 41`` grid. (Nodes are computed as ``i / (n-1)``, not with ``linspace``,
so shared nodes are bitwise equal.)
"""

import numpy as np


def node_coordinates(n):
    """The ``n`` node coordinates ``i / (n-1)`` of ``[0, 1]``, ``n >= 2``, float64."""
    if n < 2:
        raise ValueError(f"a grid needs n >= 2 nodes, got {n}")
    return np.arange(n) / (n - 1)


def gaussian_random_field(n, n_samples, seed, length_scale=0.2, smoothness=1.0, n_modes=32):
    r"""Unit-variance stationary Gaussian random fields on ``[0,1]^2``, Matérn-like spectrum.

    The field is a truncated Karhunen–Loève series of a stationary field on
    the torus :math:`[0,2)^2` restricted to :math:`[0,1]^2` (so it has neither
    a boundary condition nor periodicity on the unit square):

    .. math::

        g(x, y) = \sum_{a, b} \sigma_{ab}\, \xi_{ab}\, \phi_a(x)\, \phi_b(y), \qquad
        \xi_{ab} \sim N(0, 1) \text{ i.i.d.},

    with the 1-D basis :math:`\phi_a \in \{\cos(\pi k x)\}_{k=0}^{K-1} \cup
    \{\sin(\pi k x)\}_{k=1}^{K-1}` (``2K - 1`` functions, ``K = n_modes``) and
    :math:`\sigma_{ab}^2 = m_{k_a} m_{k_b} S(\pi k_a, \pi k_b) / Z`, where
    :math:`k_a` is the frequency of :math:`\phi_a`, :math:`m_0 = 1`,
    :math:`m_k = 2` (the :math:`\pm k` pair), the Matérn spectral density

    .. math::  S(\omega) = \left(\tfrac{2\nu}{\rho^2} + |\omega|^2\right)^{-(\nu + 1)}

    (:math:`\rho` = ``length_scale``, :math:`\nu` = ``smoothness``; the
    classic ``(-Δ + τ²)^{-α}`` form with :math:`\tau^2 = 2\nu/\rho^2`,
    :math:`\alpha = \nu + 1`), and :math:`Z = \sum_{k,l<K} m_k m_l S` so that
    :math:`\mathrm{Var}\, g(x, y) = 1` exactly at every point. The covariance
    is :math:`\sum_{k,l} m_k m_l S\, \cos(\pi k \Delta x) \cos(\pi l \Delta y) / Z`,
    a function of the separation only.

    Parameters
    ----------
    n : int
        Nodes per side of the grid, ``n >= 2``.
    n_samples : int
        Number of independent fields.
    seed : int, sequence of int, np.random.SeedSequence or np.random.Generator
        Anything :func:`numpy.random.default_rng` accepts. Sample ``s`` uses
        the ``s``-th block of ``(2K-1)^2`` normal draws, so it depends on
        neither ``n`` nor ``n_samples``.
    length_scale : float, default 0.2
        Correlation length :math:`\rho` as a fraction of the domain.
    smoothness : float, default 1.0
        Matérn smoothness :math:`\nu > 0`: the field is about :math:`\nu`
        times differentiable (in mean square, :math:`\lceil\nu\rceil - 1` times).
    n_modes : int, default 32
        Frequencies ``K`` per axis; the resolution-independent truncation.

    Returns
    -------
    np.ndarray
        ``[n_samples, n, n]`` float64.
    """
    if length_scale <= 0 or smoothness <= 0 or n_modes < 1 or n_samples < 0:
        raise ValueError(
            "need length_scale > 0, smoothness > 0, n_modes >= 1 and n_samples >= 0; got "
            f"{length_scale}, {smoothness}, {n_modes}, {n_samples}"
        )
    rng = np.random.default_rng(seed)
    k = np.arange(n_modes)
    freq = np.pi * np.concatenate([k, k[1:]])  # frequency of each 1-D basis function
    mult = np.where(freq == 0, 1.0, 2.0)
    density = (2 * smoothness / length_scale**2 + freq[:, None] ** 2 + freq[None, :] ** 2)
    weight = mult[:, None] * mult[None, :] * density ** -(smoothness + 1)
    # the cos and sin columns of one frequency share (k, l), so Z counts each (k, l) once
    Z = weight[:n_modes, :n_modes].sum()
    coef = np.sqrt(weight / Z) * rng.standard_normal((n_samples, 2 * n_modes - 1, 2 * n_modes - 1))
    x = node_coordinates(n)[:, None]
    phi = np.concatenate([np.cos(x * (np.pi * k)), np.sin(x * (np.pi * k[1:]))], axis=1)  # [n, 2K-1]
    return phi @ coef @ phi.T


def two_phase_field(grf, high=12.0, low=3.0):
    """Two-phase coefficient: ``high`` where the field is ``>= 0``, ``low`` elsewhere.

    Parameters
    ----------
    grf : np.ndarray
        Any array, typically from :func:`gaussian_random_field`.
    high, low : float, default 12.0, 3.0
        The two phase values (the classic FNO Darcy benchmark uses 12 and 3).

    Returns
    -------
    np.ndarray
        Shaped like ``grf``, float64.
    """
    return np.where(np.asarray(grf) >= 0, float(high), float(low))


def lognormal_field(grf, median=1.0, sigma=1.0):
    r"""Log-normal coefficient :math:`\mathrm{median} \cdot \exp(\sigma g)` of a unit-variance field.

    Parameters
    ----------
    grf : np.ndarray
        Unit-variance Gaussian field :math:`g`, typically from
        :func:`gaussian_random_field`.
    median : float, default 1.0
        Pointwise median (and geometric mean) of the coefficient.
    sigma : float, default 1.0
        Standard deviation of its logarithm.

    Returns
    -------
    np.ndarray
        Shaped like ``grf``, positive, float64.
    """
    return median * np.exp(sigma * np.asarray(grf, dtype=np.float64))


def random_load(n, n_samples, seed, n_components=1, length_scale=0.15, smoothness=2.0,
                offset_std=0.5, n_modes=32):
    r"""Smooth random loadings with a random uniform part, one per sample and component.

    .. math::  f_{s,c}(x, y) = g_{s,c}(x, y) + c_{s,c}, \qquad c_{s,c} \sim N(0, \sigma_c^2),

    with :math:`g_{s,c}` independent :func:`gaussian_random_field` draws. The
    explicit offset makes the inputs span the uniform-load direction, which
    the smooth field alone barely probes (a kernel is only constrained on the
    directions its inputs span, and kernel row sums are the response to a
    uniform load).

    Parameters
    ----------
    n : int
        Nodes per side of the grid.
    n_samples : int
        Number of loadings.
    seed : int, sequence of int, np.random.SeedSequence or np.random.Generator
        Seeds two independent streams (fields, offsets), so sample ``s`` does
        not depend on ``n`` or ``n_samples``.
    n_components : int, default 1
        Components per loading (2 for a body force).
    length_scale, smoothness, n_modes
        Of the fields, see :func:`gaussian_random_field`.
    offset_std : float, default 0.5
        :math:`\sigma_c`, standard deviation of the uniform part (the field has
        unit variance).

    Returns
    -------
    np.ndarray
        ``[n_samples, n_components, n, n]`` float64.
    """
    field_rng, offset_rng = np.random.default_rng(seed).spawn(2)
    g = gaussian_random_field(n, n_samples * n_components, field_rng, length_scale, smoothness, n_modes)
    offset = offset_rng.normal(0.0, offset_std, (n_samples, n_components, 1, 1))
    return g.reshape(n_samples, n_components, n, n) + offset


def _cubic_bspline_weights(n_pixels, x):
    r"""``[len(x), n_pixels]`` weights :math:`B_3(P x - p - 1/2)` of the pixels ``p`` at the points ``x``.

    :math:`B_3` is the centred cubic B-spline (support ``[-2, 2]``): the
    weights are non-negative and sum to one wherever all four contributing
    pixels exist, so the resampled intensity stays within the pixels' range.
    """
    t = np.abs(n_pixels * np.asarray(x)[:, None] - (np.arange(n_pixels) + 0.5))
    return np.where(t < 1, 2 / 3 - t**2 + t**3 / 2, np.where(t < 2, (2 - t) ** 3 / 6, 0.0))


def digit_modulus(image, n, stiff=1.0, soft=0.1, pad=2):
    r"""Young's modulus of a microstructure drawn by a grey-scale image (e.g. a handwritten digit).

    The image is framed by ``pad`` blank pixels per side, the framed picture
    covers :math:`[0,1]^2` with pixel centres at :math:`(p + 1/2)/P`, and its
    intensity is resampled by cubic B-spline smoothing,

    .. math::  I(x, y) = \sum_{p, q} I_{pq}\, B_3(P x - p - \tfrac12)\, B_3(P y - q - \tfrac12),

    a :math:`C^2` picture (the same continuous one at every grid size) that
    never over- or undershoots the pixels (no ringing around the strokes,
    slightly softer than the pixels), then mapped to

    .. math::  E = E_\mathrm{soft} + (E_\mathrm{stiff} - E_\mathrm{soft})\, I(x, y).

    The picture is oriented to read upright with ``x`` to the right and ``y``
    up: image column ``c`` runs along ``x``, image row ``r`` (top first) along
    decreasing ``y``.

    Parameters
    ----------
    image : np.ndarray
        ``[..., rows, cols]`` intensities in ``[0, 1]`` (scikit-learn's
        ``load_digits().images / 16``: ``8 x 8``).
    n : int
        Nodes per side of the grid.
    stiff, soft : float, default 1.0, 0.1
        Modulus of full-intensity (ink) and blank (matrix) material, in
        arbitrary units, ``stiff, soft > 0``.
    pad : int, default 2
        Blank pixels framing the image, keeping the ink clear of the clamped
        boundary (with ``pad >= 2`` no ink reaches a boundary node).

    Returns
    -------
    np.ndarray
        ``[..., n, n]`` float64 modulus in ``[min(soft, stiff), max(soft, stiff)]``.
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim < 2 or not np.all((image >= 0) & (image <= 1)):
        raise ValueError(
            f"image must be [..., rows, cols] with intensities in [0, 1], got shape {image.shape}"
        )
    if stiff <= 0 or soft <= 0:
        raise ValueError(f"moduli must be positive, got stiff={stiff}, soft={soft}")
    # axis 0 = x = image columns, axis 1 = y = image rows from the bottom
    picture = np.swapaxes(image[..., ::-1, :], -1, -2)
    widths = [(0, 0)] * (picture.ndim - 2) + [(pad, pad)] * 2
    picture = np.pad(picture, widths)
    x = node_coordinates(n)
    rows, cols = (_cubic_bspline_weights(p, x) for p in picture.shape[-2:])
    return soft + (stiff - soft) * (rows @ picture @ cols.T)
