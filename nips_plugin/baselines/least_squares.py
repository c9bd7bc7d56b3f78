"""In-context least squares and its variants: the no-learning floors."""

import torch

from ..layers.context_fit import ContextFit
from .local_operator import is_output_error, local_operator_prior, output_error_prediction
from .predictor import ContextPredictor
from .prior import ClassicalPrior


class LeastSquaresPredictor(ContextPredictor):
    r"""In-context least squares: the no-learning floor, with the predictor's interface.

    A query ``f`` is fitted by the context inputs, ``f \approx a F``, and
    predicted with the same combination of the context responses, ``a U``
    (:class:`~nips_plugin.layers.context_fit.ContextFit`); its kernel is the
    rank-``d`` matrix ``U F^+``. With ``mode="symmetric"`` the operator is also
    assumed symmetric, which fixes its span side exactly as well (still nothing
    learned). Physical units throughout (the fit is scale-equivariant),
    computed in float64.

    Parameters
    ----------
    n_pairs : int
        Context pairs ``d``.
    in_components, out_components : int, default 1
    n_dim : int, default 2
    mode : {"least_squares", "symmetric"}
    shared_operator_modes : int, optional
        Also apply, to the part of the query the context does not span, the
        zoo models' shared sine-series operator as it starts, the inverse Dirichlet
        Laplacian (:class:`~nips_plugin.layers.sine_operator.SineSeriesOperator`,
        modes adapted to the grid), scaled for each context by its match on the span:
        the enhanced models' starting point, a prior for elliptic problems, still
        nothing learned.
    local_operator : str, optional
        Apply instead, where it applies, each context's fitted local operator
        (:func:`~nips_plugin.baselines.local_operator.local_operator_prior`; one of
        ``LOCAL_OPERATORS``): the enhanced models' prior with ``local_operator`` set.
        One of ``OUTPUT_ERROR_OPERATORS`` (noisy responses) is the context's fit itself:
        where it applies it predicts the whole query, since the exact fit on the span
        would pass the context's noise on.
    """

    def __init__(self, n_pairs, in_components=1, out_components=1, n_dim=2, mode="least_squares",
                 shared_operator_modes=None, local_operator=None):
        self.n_pairs, self.in_components, self.out_components, self.n_dim = (
            n_pairs, in_components, out_components, n_dim)
        self.mode = mode
        self.shared_operator_modes, self.local_operator = shared_operator_modes, local_operator
        # the equation-error local operator on the residual; the output-error one predicts alone
        self._local = local_operator if local_operator and not is_output_error(local_operator) else None
        self._classical = None if not shared_operator_modes else ClassicalPrior(
            self._local or "laplace", in_components, out_components, shared_operator_modes)

    def _prior(self, f, u, fit, rows):
        """The priors applied to ``rows`` ``[B, m, N*c_f]`` for the context ``f, u``: the
        local operator where it applies, elsewhere the scaled Laplacian (:class:`ClassicalPrior`;
        None without either)."""
        if self._classical is not None:
            return self._classical.apply(f, u, rows, fit)
        return None if self._local is None else local_operator_prior(f, u, self._local, rows)[0]

    def _fit(self, f, u):
        return ContextFit(f.flatten(2), u.flatten(2), self.mode)

    @torch.no_grad()
    def predict(self, f_ctx, u_ctx, f_query):
        """As :meth:`ContextPredictor.predict`; physical units."""
        f, u, fq, batched = self._queries(f_ctx, u_ctx, f_query)
        fit = self._fit(f, u)
        y = fit.predict(fq.flatten(2), self._prior(f, u, fit, fit.residual(fq.flatten(2))))
        y = output_error_prediction(f, u, self.local_operator, fq.flatten(2), y)
        return self._like(y.reshape(*fq.shape[:2], self.out_components, *fq.shape[3:]), f_query, batched)

    @torch.no_grad()
    def kernel(self, f_ctx, u_ctx):
        """As :meth:`ContextPredictor.kernel`; physical units."""
        f, u, batched = self._context(f_ctx, u_ctx)
        fit = self._fit(f, u)
        eye = torch.eye(f.shape[2:].numel(), dtype=torch.float64, device=f.device)[None]
        eye = eye.expand(f.shape[0], -1, -1)
        prior = self._prior(f, u, fit, eye)     # rows for the identity's rows: M^T
        M = fit.kernel(None if prior is None else prior.mT)
        return self._like(output_error_prediction(f, u, self.local_operator, eye, M.mT).mT, f_ctx, batched)
