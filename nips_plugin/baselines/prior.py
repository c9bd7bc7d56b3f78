r"""A classical operator fitted to each context, and a learned model that corrects it.

:class:`ClassicalPrior` maps a context ``(f_ctx, u_ctx)`` of one system to an
operator ``G`` with ``u \approx G f``, fitted with no learning:

* ``"laplace"``: the inverse Dirichlet Laplacian (a truncated sine series,
  :class:`~nips_plugin.layers.sine_operator.SineSeriesOperator`) scaled to the
  context by its least-squares match on the span of the context inputs
  (:meth:`~nips_plugin.layers.context_fit.ContextFit.operator_scale`);
* a local operator (:data:`~nips_plugin.baselines.local_operator.LOCAL_OPERATORS`,
  :data:`~nips_plugin.baselines.local_operator.OUTPUT_ERROR_OPERATORS`): the inverse of
  a stencil relation fitted to the context (:mod:`nips_plugin.baselines.local_operator`),
  ``"laplace"`` for the contexts it refuses.

:class:`PriorResidualProcessor` composes a prior with any learned in-context model
through neuraloperator's data processor, the place for what happens around a model:
the model reads the context with the prior's residual responses and its output is
added to the prior's prediction,

.. math:: \hat u = G f + \mathcal{M}\big(f_{1:d},\ u_{1:d} - G f_{1:d}\big)[f],

so the model learns what the classical fit misses, and the model itself stays the
paper's. The benchmark's ``*_hybrid`` rows are trained this way.
"""

import torch

from ..data.loaders import InContextDataProcessor
from ..layers.context import pack_context, pack_responses, unpack_context
from ..layers.context_fit import ContextFit
from ..layers.sine_operator import SineSeriesOperator
from .local_operator import LOCAL_OPERATORS, OUTPUT_ERROR_OPERATORS, local_operator_prior

#: the priors :class:`ClassicalPrior` knows
PRIORS = ("laplace", *LOCAL_OPERATORS, *OUTPUT_ERROR_OPERATORS)

#: sines per axis of the ``"laplace"`` prior on 2-D grids (adapted to the grid, :func:`grid_modes`)
LAPLACE_MODES = 12


def grid_modes(modes, grid_shape, offset=0):
    """Grid-aware modes per axis for a configured ``modes`` (an int meant for 2-D): the same
    number of coefficients in every dimension, ``round(modes^(2/D))`` per axis (12 -> 5 per
    axis in 3-D), and no more than an ``n``-node axis resolves (``n - offset``)."""
    per_axis = max(1, round(modes ** (2 / len(grid_shape))))
    return tuple(max(1, min(per_axis, n - offset)) for n in grid_shape)


class ClassicalPrior:
    """A no-learning operator ``G`` fitted to each context (module docstring).

    Parameters
    ----------
    name : str
        One of :data:`PRIORS`.
    in_components, out_components : int, default 1
        ``c_f`` and ``c_u``; a local operator needs ``c_f = c_u``.
    modes : int, default :data:`LAPLACE_MODES`
        Sines per axis of the scaled Laplacian on 2-D grids (:func:`grid_modes`).
    """

    def __init__(self, name, in_components=1, out_components=1, modes=LAPLACE_MODES):
        if name not in PRIORS:
            raise ValueError(f"prior must be one of {PRIORS}, got {name!r}")
        if name != "laplace" and in_components != out_components:
            raise ValueError(f"the local operator {name!r} needs in_components == out_components, "
                             f"got {in_components} and {out_components}")
        self.name, self.in_components, self.out_components = name, in_components, out_components
        self.modes = modes
        self._laplacians = {}

    def _laplacian(self, grid):
        grid = tuple(grid)
        if grid not in self._laplacians:
            modes = grid_modes(self.modes, grid, offset=2)
            self._laplacians[grid] = SineSeriesOperator(self.in_components, self.out_components, modes).double()
        return self._laplacians[grid]

    @torch.no_grad()
    def __call__(self, f_ctx, u_ctx, f):
        """``G f`` for each context's ``G``.

        Parameters
        ----------
        f_ctx : torch.Tensor ``[B, d, c_f, *grid]``
        u_ctx : torch.Tensor ``[B, d, c_u, *grid]``
        f : torch.Tensor ``[B, m, c_f, *grid]``

        Returns
        -------
        torch.Tensor ``[B, m, c_u, *grid]``, the dtype and device of ``f`` (computed in float64).
        """
        out = self.apply(f_ctx, u_ctx, f.detach().double().flatten(2))
        return out.reshape(*f.shape[:2], self.out_components, *f.shape[3:]).to(f)

    @torch.no_grad()
    def apply(self, f_ctx, u_ctx, rows, fit=None):
        """``G r`` for rows ``r`` ``[B, m, c_f*N]`` (float64), ``[B, m, c_u*N]``; ``fit``: the
        context's :class:`~nips_plugin.layers.context_fit.ContextFit` if the caller has one (it
        gives the Laplacian's scale), else made here."""
        grid = f_ctx.shape[3:]
        out = used = None
        if self.name != "laplace":
            out, used = local_operator_prior(f_ctx.double(), u_ctx.double(), self.name, rows)
        if used is None or not used.all():  # the scaled Laplacian where no local fit is used
            S = self._laplacian(grid).to(rows.device)
            if fit is None:
                fit = ContextFit(*(t.detach().double().flatten(2) for t in (f_ctx, u_ctx)), "least_squares")
            scaled = fit.operator_scale(lambda r: S(r, grid)) * S(rows, grid)
            out = scaled if used is None else torch.where(used[:, None, None], out, scaled)
        return out


class PriorResidualProcessor(InContextDataProcessor):
    """:class:`~nips_plugin.data.loaders.InContextDataProcessor` around a model that corrects
    a :class:`ClassicalPrior` (module docstring).

    :meth:`preprocess` replaces the context responses in ``x`` by their residuals
    ``u_i - G f_i`` (physical units, before the normalisation) and stores the prior's
    prediction for the queries (the context inputs when ``q = 0``) under ``"prior"``,
    normalised; :meth:`postprocess` adds it to the model's output before the
    de-normalisation, so training and evaluation losses see the whole prediction.

    Parameters
    ----------
    n_pairs, n_queries, in_components, out_components, mode, n_hidden
        As for :class:`~nips_plugin.data.loaders.InContextDataProcessor` (``mode="incontext"``).
    prior : str
        One of :data:`PRIORS`.
    """

    def __init__(self, n_pairs, n_queries=0, in_components=1, out_components=1, mode="incontext",
                 n_hidden=0, prior="laplace"):
        if mode != "incontext":
            raise ValueError("a classical prior needs the in-context layout (mode='incontext')")
        super().__init__(n_pairs, n_queries, in_components, out_components, mode, n_hidden)
        self.prior = ClassicalPrior(prior, in_components, out_components)

    @classmethod
    def around(cls, processor, prior):
        """The fitted ``processor`` with ``prior`` (same statistics)."""
        wrapped = cls(**processor.config, prior=prior)
        wrapped.load_state_dict(processor.state_dict())
        return wrapped.to(processor.device)

    @property
    def config(self):
        return dict(super().config, prior=self.prior.name)

    def preprocess(self, data_dict, batched=True):
        if not batched:
            raise ValueError("PriorResidualProcessor works on batches")
        lay = self.layout
        x = data_dict["x"].to(self.device)
        f_ctx, u_ctx, f_query = unpack_context(x, lay.n_pairs, lay.in_components, lay.out_components)
        # one call for context and queries: each context's fit is made once
        g_ctx, g_query = self.prior(f_ctx, u_ctx, torch.cat([f_ctx, f_query], 1)).split(
            [lay.n_pairs, lay.n_queries], 1)
        g_query = g_query if lay.n_queries else g_ctx
        data_dict["x"] = pack_context(f_ctx, u_ctx - g_ctx, f_query if lay.n_queries else None)
        data_dict = super().preprocess(data_dict, batched)
        prior = pack_responses(g_query)
        data_dict["prior"] = prior / self._per_channel(self._y_scale(), prior, 1)
        return data_dict

    def postprocess(self, output, data_dict):
        return super().postprocess(output + data_dict["prior"], data_dict)
