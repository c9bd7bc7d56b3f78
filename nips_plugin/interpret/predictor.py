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

from ..baselines.predictor import ContextPredictor
from ..data.loaders import InContextDataProcessor
from ..layers.context import pack_context, unpack_responses
from ..models.incontext import InContextOperator
from ..training.run import load_run
from ..training.zoo import IN_CONTEXT_MODELS


class InContextPredictor(ContextPredictor):
    """A trained NIPS / NAO / LinearNAO with its data processor, in physical units.

    The interface of :class:`~nips_plugin.baselines.predictor.ContextPredictor`
    (numpy arrays or torch tensors, one system or a batch).

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

    def _sigmas(self, like):
        """``sigma_f [c_f]``, ``sigma_u [c_u]`` on the device and dtype of ``like``."""
        p = self.processor
        return p.sigma_f.to(like), p.sigma_u.to(like)

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
        u_model, prior = self._model_context(f, u, fq)
        x = pack_context(f / self._per_component(sf, f), u_model / self._per_component(su, u),
                         fq / self._per_component(sf, fq))
        y = unpack_responses(self.model(x), self.out_components)
        y = y * self._per_component(su, y)
        return self._like(y if prior is None else y + prior, f_query, batched)

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
        # the prior's outputs for the identity's rows are its matrix transposed
        has_prior = getattr(self.processor, "prior", None) is not None
        u_model, prior = self._model_context(f, u, self._identity_rows(f) if has_prior else None)
        M = self.model.extract_kernel(pack_context(f / self._per_component(sf, f),
                                                   u_model / self._per_component(su, u)))
        N = f[0, 0, 0].numel()
        row = su.repeat_interleave(N)  # component-major: N entries per component
        col = sf.repeat_interleave(N)
        M = row[:, None] * M / col
        return self._like(M if prior is None else M + prior.flatten(2).mT, f_ctx, batched)

    def _model_context(self, f, u, rows):
        """The context responses the model reads and the prediction for ``rows`` (inputs
        ``[B, m, c_f, *grid]``) of the classical prior it corrects, in one call (None without a
        prior: :class:`~nips_plugin.baselines.PriorResidualProcessor`)."""
        prior = getattr(self.processor, "prior", None)
        if prior is None:
            return u, None
        g_ctx, g_rows = prior(f, u, torch.cat([f, rows], 1)).split([f.shape[1], rows.shape[1]], 1)
        return u - g_ctx, g_rows

    @staticmethod
    def _identity_rows(f):
        """The identity as input functions ``[B, N*c_f, c_f, *grid]``."""
        n_f = f[0, 0].numel()
        eye = torch.eye(n_f, dtype=f.dtype, device=f.device).expand(len(f), -1, -1)
        return eye.reshape(len(f), n_f, *f.shape[2:])
