r"""A trained in-context model used in physical units: predictions and its kernel.

The models work in the data processor's normalised units, :math:`f/\sigma_f`
and :math:`u/\sigma_u` per component (scale only, no centring). Their kernel
:math:`M_{norm}` (:meth:`~nips_plugin.models.incontext.InContextOperator.extract_kernel`)
maps normalised inputs to normalised responses, so in physical units

.. math:: u = M f, \qquad M = \mathrm{diag}(\sigma_u) \, M_{norm} \, \mathrm{diag}(\sigma_f)^{-1},

where :math:`\sigma_u` (:math:`\sigma_f`) is repeated over the ``N`` grid
points of each output (input) component.
"""

import torch

from ..data.loaders import InContextDataProcessor
from ..layers.context import pack_context, unpack_responses
from ..layers.context_fit import ContextFit
from ..layers.local_operator import is_output_error, local_operator_prior, output_error_prediction
from ..layers.sine_operator import SineSeriesOperator
from ..models.incontext import InContextOperator
from ..training.run import load_run
from ..training.zoo import IN_CONTEXT_MODELS, grid_modes


class InContextPredictor:
    """A trained NIPS / NAO / LinearNAO with its data processor, in physical units.

    Every method takes numpy arrays or torch tensors, one system
    (``[n, c, *grid]``) or a batch of systems (``[B, n, c, *grid]``), and
    returns the same kind (numpy or torch on the input's device), floating
    dtype and batching.

    Parameters
    ----------
    model : InContextOperator
        A trained in-context model (it is put in eval mode).
    processor : InContextDataProcessor
        The processor it was trained with (``mode="incontext"``), whose
        ``sigma_f`` / ``sigma_u`` define the normalised units.

    Attributes
    ----------
    config : dict or None
        The run's ``config.json`` when built by :meth:`from_run`.
    """

    def __init__(self, model, processor):
        if not isinstance(model, InContextOperator):
            raise TypeError(f"{type(model).__name__} is not an in-context operator; interpretation needs "
                            f"one of {list(IN_CONTEXT_MODELS)} (a model with extract_kernel)")
        if not isinstance(processor, InContextDataProcessor) or processor.mode != "incontext":
            raise TypeError("processor must be the InContextDataProcessor (mode='incontext') the model "
                            "was trained with")
        got = (processor.layout.n_pairs, processor.layout.in_components, processor.layout.out_components)
        want = (model.layout.n_pairs, model.layout.in_components, model.layout.out_components)
        if got != want:
            raise ValueError(f"processor layout (d, c_f, c_u) = {got} does not match the model's {want}")
        self.model, self.processor, self.config = model.eval(), processor, None

    @classmethod
    def from_run(cls, run_dir, map_location="cpu"):
        """Load a run folder written by :func:`nips_plugin.training.run.train_run`.

        Raises
        ------
        ValueError
            When the run trained a model that is not in-context (FNO, TFNO, the oracle).
        """
        model, processor, config = load_run(run_dir, map_location)
        if config.get("name") not in IN_CONTEXT_MODELS:
            raise ValueError(f"run {run_dir} trained {config.get('name')!r}, which builds no kernel; "
                             f"interpretation needs one of {list(IN_CONTEXT_MODELS)}")
        predictor = cls(model, processor)
        predictor.config = config
        return predictor

    @property
    def n_pairs(self):
        """Context pairs ``d`` the model reads."""
        return self.model.layout.n_pairs

    @property
    def in_components(self):
        """``c_f``."""
        return self.model.layout.in_components

    @property
    def out_components(self):
        """``c_u``."""
        return self.model.layout.out_components

    @property
    def n_dim(self):
        """Grid dimension."""
        return self.model.n_dim

    def _tensor_options(self):
        param = next(self.model.parameters())
        return dict(device=param.device, dtype=param.dtype)

    def _read(self, name, a, components, n_functions=None):
        """``a`` as a batched float tensor ``[B, n, c, *grid]`` on the model, and whether it was batched."""
        if not (torch.is_tensor(a) or hasattr(a, "__array__")):
            raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(a).__name__}")
        t = torch.as_tensor(a)
        n_dim = self.n_dim
        if t.ndim not in (n_dim + 2, n_dim + 3):
            raise ValueError(f"{name} must be [n, c, *grid] or [B, n, c, *grid] with a {n_dim}-D grid, "
                             f"got shape {tuple(t.shape)}")
        batched = t.ndim == n_dim + 3
        t = t if batched else t[None]
        if t.shape[2] != components:
            raise ValueError(f"{name} has {t.shape[2]} components (axis {1 + batched}), the model expects "
                             f"{components}")
        if n_functions is not None and t.shape[1] != n_functions:
            raise ValueError(f"{name} holds {t.shape[1]} functions (axis {int(batched)}), the model reads "
                             f"contexts of d = {n_functions} pairs")
        if t.shape[1] < 1:
            raise ValueError(f"{name} holds no functions")
        t = t.to(**self._tensor_options())
        if not torch.isfinite(t).all():
            raise ValueError(f"{name} has non-finite (NaN/inf) values")
        return t, batched

    def _context(self, f_ctx, u_ctx):
        """Validated, batched context tensors (physical units) and the batching flag."""
        f, batched = self._read("f_ctx", f_ctx, self.in_components, self.n_pairs)
        u, u_batched = self._read("u_ctx", u_ctx, self.out_components, self.n_pairs)
        if u_batched != batched or u.shape[0] != f.shape[0] or u.shape[3:] != f.shape[3:]:
            raise ValueError(f"u_ctx {tuple(torch.as_tensor(u_ctx).shape)} must have the batching, batch "
                             f"size and grid of f_ctx {tuple(torch.as_tensor(f_ctx).shape)}")
        return f, u, batched

    def _queries(self, f_ctx, u_ctx, f_query):
        """Validated, batched context and query tensors, and the batching flag."""
        f, u, batched = self._context(f_ctx, u_ctx)
        fq, q_batched = self._read("f_query", f_query, self.in_components)
        if q_batched != batched or fq.shape[0] != f.shape[0] or fq.shape[3:] != f.shape[3:]:
            raise ValueError(f"f_query {tuple(torch.as_tensor(f_query).shape)} must have the batching, batch "
                             f"size and grid of f_ctx {tuple(torch.as_tensor(f_ctx).shape)}")
        return f, u, fq, batched

    def _sigmas(self, like):
        """``sigma_f [c_f]``, ``sigma_u [c_u]`` on the device and dtype of ``like``."""
        p = self.processor
        return p.sigma_f.to(like), p.sigma_u.to(like)

    @staticmethod
    def _per_component(sigma, t):
        """View ``sigma [c]`` to broadcast over ``t [B, n, c, *grid]``."""
        return sigma.view(1, 1, -1, *[1] * (t.ndim - 3))

    @staticmethod
    def _like(t, ref, batched):
        """``t`` (batched) unbatched if ``ref`` was, as the kind and floating dtype of ``ref``."""
        t = t if batched else t[0]
        if torch.is_tensor(ref):
            return t.to(device=ref.device, dtype=ref.dtype if ref.is_floating_point() else t.dtype)
        out = t.detach().cpu().numpy()
        dtype = getattr(ref, "dtype", None)
        return out.astype(dtype) if dtype is not None and dtype.kind == "f" else out

    @torch.no_grad()
    def predict(self, f_ctx, u_ctx, f_query):
        """Responses to query inputs, given a context, in physical units.

        Parameters
        ----------
        f_ctx : array or tensor
            ``[d, c_f, *grid]`` (or ``[B, d, c_f, *grid]``) context inputs.
        u_ctx : array or tensor
            ``[d, c_u, *grid]`` context responses.
        f_query : array or tensor
            ``[q, c_f, *grid]`` query inputs, ``q >= 1``.

        Returns
        -------
        array or tensor
            ``[q, c_u, *grid]`` (or ``[B, q, c_u, *grid]``) predicted responses,
            the kind and dtype of ``f_query``.
        """
        f, u, fq, batched = self._queries(f_ctx, u_ctx, f_query)
        sf, su = self._sigmas(f)
        x = pack_context(f / self._per_component(sf, f), u / self._per_component(su, u),
                         fq / self._per_component(sf, fq))
        y = unpack_responses(self.model(x), self.out_components)
        return self._like(y * self._per_component(su, y), f_query, batched)

    @torch.no_grad()
    def kernel(self, f_ctx, u_ctx):
        """The model's operator matrix ``M`` for a context, in physical units (module docstring).

        Parameters
        ----------
        f_ctx : array or tensor
            ``[d, c_f, *grid]`` (or ``[B, d, c_f, *grid]``) context inputs.
        u_ctx : array or tensor
            ``[d, c_u, *grid]`` context responses.

        Returns
        -------
        array or tensor
            ``[N*c_u, N*c_f]`` (or ``[B, N*c_u, N*c_f]``), ``N`` grid points,
            rows and columns component-major and the grid row-major (the
            layout of ``extract_kernel``): ``u.reshape(-1) ≈ M @ f.reshape(-1)``
            for any input ``f`` ``[c_f, *grid]`` of the context's system. The
            kind and dtype of ``f_ctx``.
        """
        f, u, batched = self._context(f_ctx, u_ctx)
        sf, su = self._sigmas(f)
        M = self.model.extract_kernel(pack_context(f / self._per_component(sf, f), u / self._per_component(su, u)))
        N = f[0, 0, 0].numel()
        row = su.repeat_interleave(N)  # component-major: N entries per component
        col = sf.repeat_interleave(N)
        return self._like(row[:, None] * M / col, f_ctx, batched)


class LeastSquaresPredictor(InContextPredictor):
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
        (:func:`~nips_plugin.layers.local_operator.local_operator_prior`; one of
        ``LOCAL_OPERATORS``): the enhanced models' prior with ``local_operator`` set.
        One of ``OUTPUT_ERROR_OPERATORS`` (noisy responses) is the context's fit itself:
        where it applies it predicts the whole query, since the exact fit on the span
        would pass the context's noise on.
    """

    # plain attributes in place of the base class's properties, which read the model
    n_pairs = in_components = out_components = n_dim = None

    def __init__(self, n_pairs, in_components=1, out_components=1, n_dim=2, mode="least_squares",
                 shared_operator_modes=None, local_operator=None):
        self.n_pairs, self.in_components, self.out_components, self.n_dim = (
            n_pairs, in_components, out_components, n_dim)
        self.mode, self.model, self.processor, self.config = mode, None, None, None
        self.shared_operator_modes, self.local_operator = shared_operator_modes, local_operator

    def _prior(self, f, u, fit, rows, grid):
        """The priors applied to ``rows`` ``[B, m, N*c_f]`` for the context ``f, u``: the
        local operator where it applies, elsewhere the scaled shared operator (None without
        either)."""
        prior = None
        if self.shared_operator_modes:
            S = SineSeriesOperator(self.in_components, self.out_components,
                                   grid_modes(self.shared_operator_modes, grid, offset=2)).double()
            prior = fit.operator_scale(lambda r: S(r, grid)) * S(rows, grid)
        if self.local_operator and not is_output_error(self.local_operator):
            local, used = local_operator_prior(f, u, self.local_operator, rows)
            prior = local if prior is None else torch.where(used[:, None, None], local, prior)
        return prior

    def _tensor_options(self):
        return dict(dtype=torch.float64)

    def _fit(self, f, u):
        return ContextFit(f.flatten(2), u.flatten(2), self.mode)

    @torch.no_grad()
    def predict(self, f_ctx, u_ctx, f_query):
        """As :meth:`InContextPredictor.predict`."""
        f, u, fq, batched = self._queries(f_ctx, u_ctx, f_query)
        fit = self._fit(f, u)
        y = fit.predict(fq.flatten(2), self._prior(f, u, fit, fit.residual(fq.flatten(2)), fq.shape[3:]))
        y = output_error_prediction(f, u, self.local_operator, fq.flatten(2), y)
        return self._like(y.reshape(*fq.shape[:2], self.out_components, *fq.shape[3:]), f_query, batched)

    @torch.no_grad()
    def kernel(self, f_ctx, u_ctx):
        """As :meth:`InContextPredictor.kernel`."""
        f, u, batched = self._context(f_ctx, u_ctx)
        fit = self._fit(f, u)
        eye = torch.eye(f.shape[2:].numel(), dtype=torch.float64, device=f.device)[None]
        eye = eye.expand(f.shape[0], -1, -1)
        prior = self._prior(f, u, fit, eye, f.shape[3:])     # rows for the identity's rows: M^T
        M = fit.kernel(None if prior is None else prior.mT)
        return self._like(output_error_prediction(f, u, self.local_operator, eye, M.mT).mT, f_ctx, batched)
