"""What a context of a *linear* system determines exactly: in-context least squares.

For a linear solution operator ``G`` (``u = G f``) a context of ``d`` pairs
fixes ``G`` on the span of the context inputs. With functions as rows,
``F`` ``[d, n_f]`` (inputs), ``U = F G^T`` ``[d, n_u]`` (responses), and a query ``f``:

.. math::

    f = a F + r,\\quad a = f F^+,\\quad r \\perp \\mathrm{span}(F),
    \\qquad G f = a U + G r .

``a U`` is the **in-context least-squares** prediction (no parameters, the
floor every learned model must beat); its kernel is the rank-``d`` matrix
``U^T F^{+T}`` (``U F^+`` with functions as columns). If ``G`` is also
symmetric (self-adjoint problems with ``n_f = n_u``: Darcy, linear
elasticity) the context fixes the span-side of ``G r`` too,
``P G r = F^{+T} U^T r`` (columns). Written with columns,

.. math::

    G = U F^+ + F^{+T} U^T (I - P) + (I - P) G (I - P),\\qquad P = F F^+ ,

and only the block ``(I - P) G (I - P)`` between the complements of the span
is unknown: that is all a learned kernel has to supply.

:class:`ContextFit` finds an orthonormal basis of the span once (cost
``O(n_f d^2)``, linear in the grid) and applies these maps to batches of
functions without forming any ``n x n`` matrix, except in :meth:`ContextFit.kernel`.
Any invertible recombination of the pairs (the same context of a linear
system) gives the same maps.

**Noisy responses** (``denoise``, symmetric mode). With noise ``E`` of variance
``sigma^2`` per value on the responses, the response of the ``i``-th basis
function (Gram eigenvector ``v_i``, eigenvalue ``lambda_i``) carries noise of
energy ``n_u sigma^2 / lambda_i``: the exact fit divides the noise by the small
eigenvalues of smooth inputs and passes it to every prediction. For a symmetric
operator the Gram matrix ``A = F U^T`` (``A_ij = <f_i, G f_j>``) is symmetric,
so its antisymmetric part is noise alone, and

.. math::

    \\hat\\sigma^2 = \\frac{\\|A - A^T\\|_F^2}{2 (d - 1) \\|F\\|_F^2},\\qquad
    \\phi_i = \\max\\Big(0,\\ 1 - \\frac{n_u \\hat\\sigma^2}{\\|v_i^T U\\|^2}\\Big)

(``E ||A - A^T||^2 = 2 (d-1) sigma^2 ||F||^2`` for independent noise; ``phi_i`` is the
Wiener factor of direction ``i``, whose measured energy ``||v_i^T U||^2`` is signal
plus ``n_u sigma^2``). The fit keeps ``phi_i`` of each direction,
``P_phi = Q Phi Q^T`` for the span's orthonormal basis ``Q``, and the learned kernel
acts on ``r = (I - P_phi) f``:

.. math::

    M = R \\Phi Q^T + Q \\Phi R^T (I - P_\\phi) + (I - P_\\phi) K (I - P_\\phi),
    \\qquad R = U^T V \\Lambda^{-1/2}\\ (\\text{the basis' responses}),

which is the exact completion when ``phi = 1``: on noise-free data ``A`` is
symmetric to round-off, so the denoised fit is the exact fit to round-off.
"""

import functools
from typing import Callable, Optional

import torch

#: how a learned kernel is combined with the context's exact part
MODES = ("none", "least_squares", "symmetric")


def _full_precision(method: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """Run ``method`` outside autocast, on tensors in the fit's dtype: the exact part stays
    exact under mixed precision (a bf16 basis would be orthonormal to 1e-2 only)."""

    @functools.wraps(method)
    def wrapper(
        self: "ContextFit", *tensors: Optional[torch.Tensor], **named: Optional[torch.Tensor]
    ) -> torch.Tensor:
        cast = lambda t: None if t is None else t.to(self.basis.dtype)  # noqa: E731
        with torch.autocast(self.basis.device.type, enabled=False):
            return method(self, *map(cast, tensors), **{k: cast(t) for k, t in named.items()})

    return wrapper


def antisymmetry_noise_variance(F: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
    r"""Noise variance per response value of a context of a *symmetric* operator, from its Gram matrix.

    ``F``, ``U`` ``[..., d, n]`` (pairs as rows): :math:`A = F U^\top` is symmetric for
    noise-free pairs of a symmetric operator, and for independent noise of variance
    :math:`\sigma^2` per value :math:`E\|A - A^\top\|_F^2 = 2 (d-1) \sigma^2 \|F\|_F^2`, so
    :math:`\hat\sigma^2 = \|A - A^\top\|_F^2 / (2 (d-1) \|F\|_F^2)` ``[...]``. Any asymmetry of
    the operator itself (a non-symmetric law, loads sampled off the grid) counts as noise.
    """
    A = F @ U.mT
    return (A - A.mT).square().sum((-2, -1)) / (
        2 * max(A.shape[-1] - 1, 1) * F.square().sum((-2, -1))
    )


class ContextFit:
    """The exact, parameter-free part of a linear operator given its context.

    Parameters
    ----------
    f_ctx : torch.Tensor ``[B, d, n_f]``
        Context inputs, one function per row (components and grid flattened).
    u_ctx : torch.Tensor ``[B, d, n_u]``
        Context responses.
    mode : {"least_squares", "symmetric"}
        ``"least_squares"``: ``u = a U + K r``; ``"symmetric"`` (needs
        ``n_f = n_u``): ``u = a U + F^{+T} U^T r + (I - P) K r`` (columns) for a learned
        kernel ``K`` acting on the residual ``r`` (module docstring).
    rcond : float, default 1e-6
        Directions of the span whose singular value is below ``rcond`` times the
        largest (numerically dependent context inputs) are left out of the fit
        instead of being divided by (almost) zero.
    denoise : bool, default True
        In ``"symmetric"`` mode, damp each direction of the span by its Wiener factor
        for the noise level estimated from the context (module docstring); the exact
        fit on noise-free data. Ignored in ``"least_squares"`` mode (a non-symmetric
        operator's context gives no noise estimate: that fit stays exact).

    Notes
    -----
    The span's orthonormal basis comes from the ``d x d`` Gram matrix
    ``F F^T = V Lambda V^T`` (float64; the context inputs of smooth laws are
    nearly dependent): ``basis = F^T V Lambda^{-1/2}`` ``[B, n_f, d]`` and the
    responses of the basis functions ``Lambda^{-1/2} V^T U`` ``[B, d, n_u]``;
    ``weights`` ``[B, d]`` are the factors ``phi`` (ones without denoising),
    ``noise_variance`` ``[B]`` (float64) the estimated ``sigma^2`` (zeros without).
    """

    def __init__(
        self,
        f_ctx: torch.Tensor,
        u_ctx: torch.Tensor,
        mode: str = "least_squares",
        rcond: float = 1e-6,
        denoise: bool = True,
    ) -> None:
        if mode not in MODES[1:]:
            raise ValueError(f"mode must be one of {MODES[1:]}, got {mode!r}")
        if mode == "symmetric" and f_ctx.shape[-1] != u_ctx.shape[-1]:
            raise ValueError(
                f"a symmetric operator maps a space to itself: inputs have {f_ctx.shape[-1]} values, "
                f"responses {u_ctx.shape[-1]} (use mode='least_squares')"
            )
        self.mode = mode
        with torch.autocast(f_ctx.device.type, enabled=False):
            F, U = f_ctx.double(), u_ctx.double()
            lam, V = torch.linalg.eigh(F @ F.mT)
            keep = lam > rcond**2 * lam[..., -1:]
            W = (V * (torch.where(keep, lam, 1.0).rsqrt() * keep)[..., None, :]).to(
                f_ctx.dtype
            )  # [B, d, d]
            self.basis = f_ctx.mT @ W  # [B, n_f, d], orthonormal
            self.responses = W.mT @ u_ctx.to(f_ctx.dtype)  # [B, d, n_u]
            self.noise_variance = torch.zeros(F.shape[:-2], dtype=F.dtype, device=F.device)
            phi = keep.double()
            if denoise and mode == "symmetric":
                self.noise_variance = antisymmetry_noise_variance(F, U)
                energy = (V.mT @ U).square().sum(-1)  # ||v_i^T U||^2, [B, d]
                noise = U.shape[-1] * self.noise_variance[..., None]
                phi = phi * (1 - noise / energy.clamp_min(torch.finfo(energy.dtype).tiny)).clamp(
                    0, 1
                )
            self.weights = phi.to(f_ctx.dtype)

    @_full_precision
    def coefficients(self, f: torch.Tensor) -> torch.Tensor:
        """Coordinates of ``f`` ``[B, m, n_f]`` in the orthonormal basis of the span, ``[B, m, d]``."""
        return f @ self.basis

    @_full_precision
    def residual(self, f: torch.Tensor) -> torch.Tensor:
        """``r = f - P_phi f`` ``[B, m, n_f]``: the part of ``f`` the context does not fix
        (``f - P f``, the part outside its span, without denoising)."""
        return f - (self.coefficients(f) * self.weights[:, None]) @ self.basis.mT

    @_full_precision
    def predict(self, f: torch.Tensor, learned: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The prediction for inputs ``f`` ``[B, m, n_f]``, given ``learned = K r`` ``[B, m, n_u]``
        (the learned kernel applied to :meth:`residual`; None for least squares alone)."""
        phi = self.weights[:, None]
        u = (self.coefficients(f) * phi) @ self.responses  # a U
        if self.mode == "symmetric":
            r = self.residual(f)
            u = u + ((r @ self.responses.mT) * phi) @ self.basis.mT  # F^{+T} U r, as rows
            if learned is not None:
                learned = self.residual(learned)  # (I - P) K r
        return u if learned is None else u + learned

    def operator_scale(self, operator: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """The scale ``c`` that best matches ``c S`` to the context on its span,
        ``c = <G Q, S Q>_F / ||S Q||_F^2`` (``Q`` the span's orthonormal basis, ``G Q``
        its responses): how strong this system is relative to a shared operator ``S``,
        from the context alone (any linear system), ``[B, 1, 1]``.

        Parameters
        ----------
        operator : callable
            ``S``: rows ``[B, d, n_f] -> [B, d, n_u]``.
        """
        with torch.autocast(self.basis.device.type, enabled=False):
            applied = operator(self.basis.mT)  # S Q, as rows
            num = (applied * self.responses).sum((1, 2))
            den = (applied * applied).sum((1, 2))
            return (num / den.clamp_min(torch.finfo(den.dtype).tiny))[:, None, None]

    @_full_precision
    def kernel(self, learned: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The full operator matrix ``[B, n_u, n_f]`` (``u = M f``), given the learned kernel
        ``[B, n_u, n_f]`` that acts on residuals (None: the least-squares kernel ``U F^+``)."""
        n_f = self.basis.shape[1]
        eye = torch.eye(n_f, dtype=self.basis.dtype, device=self.basis.device)
        # predict() is linear: its rows for the identity's rows are M^T; the learned part
        # for input row e_i is row i of (K (I - P))^T = (I - P) K^T
        eye = eye.expand(self.basis.shape[0], -1, -1)
        return self.predict(eye, None if learned is None else self.residual(learned).mT).mT
