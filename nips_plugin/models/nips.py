"""Neural Interpretable PDEs (NIPS): linear nonlocal attention with a Fourier kernel."""

from typing import Optional, Sequence, Union

import torch
from neuralop.models.base_model import BaseModel

from ..layers.attention import TokenLinear, filtered_queries
from ..layers.fourier_kernel import SharedSpectralFilter
from .incontext import InContextOperator


class NIPS(InContextOperator, BaseModel, name="nips"):
    """Neural Interpretable PDEs (Liu & Yu, ICML 2025).

    An in-context neural operator: from a context of ``d`` input/response pairs
    ``(f_i, u_i)`` of one system it builds a data-dependent kernel ``K`` and
    predicts responses ``u = K f`` to query inputs ``f``.

    Tokens ``J0 in R^{T x d}``, ``T = N (c_f + c_u)``, hold every grid point of
    every component of the context inputs and responses (features: the ``d``
    pairs). With quadrature weight ``Delta = prod_i 1/(n_i-1)``:

    .. math::

        J &\\leftarrow \\mathrm{LN}_0(J_0) \\\\
        J &\\leftarrow \\mathrm{LN}_t\\Big(\\sum_h \\hat J W_Q^{t,h}
             \\big(\\Delta (J W_K^{t,h})^\\top J / \\sqrt{d_k}\\big)\\Big) + J,
             \\quad \\hat J = \\mathcal{F}_t(J), \\quad t = 1..L-1 \\\\
        \\hat u &= \\sum_h Q_h \\big(\\Delta K_h^\\top f / \\sqrt{d_k}\\big),\\quad
             Q_h = \\hat J_{out} W_Q^{L,h},\\ K_h = J_f W_K^{L,h}

    where ``F_t`` filters every token block (component) with a Fourier
    multiplier shared by the ``d`` channels, ``J_f`` are the f-token rows and
    ``\\hat J_{out}`` combines, for output component ``c``, the filtered f- and
    u-blocks of component ``c`` (when ``c_f = c_u``; otherwise every block,
    filtered, contributes to every output component through its own multiplier).
    The ``T x T`` attention and the ``N c_u x N c_f`` kernel are never formed in
    ``forward`` (cost linear in ``N``); :meth:`extract_kernel` forms the kernel.

    Parameters
    ----------
    in_channels : int
        ``d*c_f + d*c_u + q*c_f`` (packed context, see :func:`nips_plugin.pack_context`).
    out_channels : int
        ``q*c_u`` (``d*c_u`` when ``q = 0``).
    n_pairs : int
        Context pairs ``d`` (the feature width of every token).
    in_components, out_components : int, default 1
        ``c_f`` and ``c_u``.
    n_layers : int, default 4
        ``L``: ``L-1`` attention layers and the kernel layer.
    n_heads : int, default 1
    qk_channels : int, default 40
        Query/key width ``dk`` per head.
    n_modes : tuple of int, default (12, 12)
        Fourier modes kept per dimension (as in FNO: the last one is halved by the
        real FFT); its length is the grid dimension (1, 2 or 3). The authors keep
        every mode of their grid (a multiplier per grid frequency, which ties the
        model to that grid); a fixed number of modes is defined on any grid.
    filter_per_head : bool, default False
        One Fourier multiplier set per head (the authors' two-component scripts)
        instead of one per layer.
    input_norm : {"slab", "token_affine", "coordinate"}, default "slab"
        ``LN_0`` over the whole ``[T, d]`` slab (:class:`~nips_plugin.layers.attention.SlabNorm`)
        with an affine that is: one per feature (``"slab"``, the default), one per
        token as in the authors' scripts (``"token_affine"``, needs ``grid_shape``),
        or a learned continuous field of the coordinates per block and feature
        (``"coordinate"``, cosine series with ``n_modes`` modes: positional
        information at any resolution, not in the paper).
        The authors' per-token affine has ``2 T d`` parameters and ties a trained
        model to its grid; the default keeps the paper's normalisation over the
        whole slab with one affine per feature, so the same weights run on any grid.
    grid_shape : tuple of int, optional
        Only for ``input_norm="token_affine"``.
    context_fit : {"none", "least_squares", "symmetric"}, default "none"
        How the learned kernel ``K`` is combined with what the context determines
        exactly for a linear operator (:mod:`nips_plugin.layers.context_fit`):
        ``"least_squares"``: ``u = a U + K r`` with ``f = a F + r`` the
        least-squares fit of the query by the context inputs;
        ``"symmetric"`` (self-adjoint problems, ``c_f = c_u``):
        ``u = a U + F^{+T} U^T r + (I - P) K r``; ``"none"`` (the default): ``u = K f``, the
        paper's model. The first two reproduce the context exactly, so they
        learn from held-out queries (``q > 0``), not from reconstructing the
        context. The kernel stays explicit (:meth:`extract_kernel` returns the
        whole ``M``) and the cost linear in the grid (``O(N d^2)``).
    shared_operator_modes : int or tuple of int, optional
        Add a learned full-rank operator shared by all systems to the kernel
        layer, a truncated sine series with this many sines per grid dimension
        (:class:`~nips_plugin.layers.sine_operator.SineSeriesOperator`, started at
        the Dirichlet Laplacian's inverse), scaled for each context by the least-
        squares match to the context on its span
        (:meth:`~nips_plugin.layers.context_fit.ContextFit.operator_scale`):
        the learned kernel becomes ``K r + c S r`` on the residual ``r``. It
        carries the global, slowly decaying part of an elliptic Green's function
        that a rank-``dk`` attention kernel cannot (in 3-D above all). Needs a
        ``context_fit``; cost ``O(N m)`` per function, resolution independent.
    checkpoint_layers : bool, default False
        Recompute each attention layer in the backward pass instead of keeping
        its activations (``torch.utils.checkpoint``, non-reentrant): training
        memory of the intermediate layers drops to one ``[B, d, T]`` tensor per
        layer at the cost of one more forward pass. For the largest grids.

    References
    ----------
    .. [1] Liu, N. and Yu, Y. "Neural Interpretable PDEs: Harmonizing Fourier
       Insights with Attention for Scalable and Interpretable Physics Discovery",
       ICML 2025, arXiv:2505.23106.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        n_pairs: int,
        in_components: int = 1,
        out_components: int = 1,
        n_layers: int = 4,
        n_heads: int = 1,
        qk_channels: int = 40,
        n_modes: Union[int, Sequence[int]] = (12, 12),
        filter_per_head: bool = False,
        input_norm: str = "slab",
        grid_shape: Optional[Sequence[int]] = None,
        checkpoint_layers: bool = False,
        context_fit: str = "none",
        shared_operator_modes: Optional[Union[int, Sequence[int]]] = None,
    ) -> None:
        super().__init__()
        self._init_layout(in_channels, out_channels, n_pairs, in_components, out_components)
        n_modes = (n_modes,) if isinstance(n_modes, int) else tuple(n_modes)
        if not 1 <= len(n_modes) <= 3:
            raise ValueError(f"n_modes must give 1 to 3 grid dimensions, got {n_modes}")
        self.n_dim, self.n_heads, self.qk_channels = len(n_modes), n_heads, qk_channels
        self.attention = "linear"
        self._init_encoder(
            input_norm,
            grid_shape,
            n_layers,
            n_modes,
            filter_per_head,
            checkpoint_layers,
            context_fit=context_fit,
            shared_operator_modes=shared_operator_modes,
        )
        cf, cu, d = in_components, out_components, n_pairs
        groups = n_heads if filter_per_head else 1
        # paired: output component c <- filtered f-block c + filtered u-block c
        self.paired = cf == cu
        n_filtered = cf + cu if self.paired else (cf + cu) * cu
        self.kernel_filter = SharedSpectralFilter(n_filtered, n_modes, groups=groups)
        self.kernel_query = TokenLinear(d, n_heads * qk_channels // groups, groups=groups)

    def _kernel_queries(self, tokens: torch.Tensor, grid_shape: Sequence[int]) -> torch.Tensor:
        # paired: output c <- f-block c + u-block c (sources f, u); otherwise every block
        # feeds every output component through its own multiplier
        cf, cu = self.layout.in_components, self.layout.out_components
        return filtered_queries(
            tokens,
            grid_shape,
            self.kernel_filter,
            self.kernel_query,
            n_sources=2 if self.paired else cf + cu,
        )

    def _map_output(self, values: torch.Tensor, grid_shape: Sequence[int]) -> torch.Tensor:
        return values
