"""Nonlocal Attention Operator (NAO) and its linear-attention variant (LinearNAO)."""

import functools
import math
from typing import Optional, Sequence, Union

import torch

from neuralop.models.base_model import BaseModel

from ..layers.attention import ORDERS, TokenLinear
from ..layers.coordinate_kernel import CoordinateKernel
from ..layers.cosine_kernel import CosineKernel
from .incontext import InContextOperator, quadrature_weight

#: the output map ``W^P``: the authors' MLP of coordinate pairs, or a truncated cosine series
OUTPUT_MAPS = ("mlp", "cosine")


class NAO(InContextOperator, BaseModel, name="nao"):
    """Nonlocal Attention Operator (Yu et al., NeurIPS 2024).

    Same tokens as :class:`~nips_plugin.NIPS`, without a Fourier filter
    (``Q = J W_Q``). The grid's nodes are ``linspace(a, b, n_i)`` along every
    axis ``i`` (``coord_range = (a, b)``) and ``Delta = prod_i (b - a)/(n_i - 1)``
    is that grid's cell volume, in every attention product and in the output map.
    Intermediate layers update ``J <- LN_t(Delta A J) + J`` with the ``T x T``
    attention ``A = sum_h Q_h K_h^T / sqrt(dk)`` (formed explicitly or not: see Cost).
    The kernel layer uses ``A`` (from the last ``J``) restricted to the
    f-token columns, applied to the model's (normalised, not LN'ed) input
    ``f``, and a learned, continuous output map ``W^P``:

    .. math::

        V = \\Delta A_{[:, f]} f \\in R^{T \\times m},\\qquad
        \\hat u[y] = \\Delta \\sum_x \\big( W^{P,f}(x, y)\\, V_f[x]
                     + W^{P,u}(x, y)\\, V_u[x] \\big),

    where ``V_f`` are the rows of ``V`` of the f-tokens (the first ``N c_f``),
    ``V_u`` those of the u-tokens, and ``W^{P,f}``, ``W^{P,u}``
    (``output_map_f``, ``output_map_u``) are continuous kernels of coordinate
    pairs, so defined at any resolution: the authors' MLPs
    (:class:`~nips_plugin.layers.coordinate_kernel.CoordinateKernel`,
    ``output_map="mlp"``) or truncated cosine series
    ``W(x, y) = sum_{k,l} C_kl phi_k(x) phi_l(y)``
    (:class:`~nips_plugin.layers.cosine_kernel.CosineKernel`, ``output_map="cosine"``).

    Cost. The attention is not normalised (no softmax), so ``(Q K^T) J`` and
    ``Q (K^T J)`` are the same function: ``attention_order="quadratic"`` (the
    default, the paper's NAO) forms ``A``, ``O(T^2 dk)`` time and ``O(T^2)``
    memory; ``attention_order="linear"`` contracts keys with values first,
    ``O(T d dk)`` time and ``O(T d)`` memory, which makes NAO cost what
    :class:`LinearNAO` costs (only the conventions below then tell them apart;
    ``extract_kernel`` forms ``A`` in either case). The MLP ``W^P`` costs its
    activations on all ``N^2`` point pairs (about 200 floats each) at every
    step: at 21x21 it dominates the train step (12x NIPS's with one layer); the
    cosine one, with ``M`` basis functions per argument, costs ``O(N M)`` per
    function. With both (not the paper's model: an addition of this
    implementation), the train step is within that of NIPS at 21x21.

    Conventions. The authors' (``NAO_Darcy.py`` and the NAO folder's
    ``Attention_darcy_gtou_int.py``; checked against their recorded outputs),
    all defaults here:
    coordinates on ``[-1, 1]`` and ``Delta`` their ``dx * dy`` (``4/(n-1)^2``
    in 2-D, not ``1/(n-1)^2``); ``W^P`` contracted over its first index
    (``output_map_contract="first"``); ``W^{P,f}`` is the scripts' ``kernel``
    MLP and ``W^{P,u}`` their ``kernelf`` (the names are the other way round).
    The NAO folder's model (the released checkpoints) also pairs ``x`` with
    the axis-swapped ``y`` (``output_map_edges="transposed"``) and normalises
    every layer's ``[T, d]`` slab with a per-token affine
    (``layer_norm="token_affine"``). The default configuration differs from the
    scripts only where they tie a model to one grid: ``input_norm="slab"``
    (per-feature affine instead of per-token) and ``layer_norm="feature"``.

    Parameters
    ----------
    in_channels, out_channels, n_pairs, in_components, out_components, n_layers, n_heads, qk_channels
        As for :class:`~nips_plugin.NIPS`.
    n_dim : int, default 2
        Grid dimension (1, 2 or 3).
    input_norm : {"slab", "token_affine", "coordinate"}, default "slab"
        As for :class:`~nips_plugin.NIPS`; ``"coordinate"`` (a resolution-independent
        positional input affine, not in the paper) needs ``input_modes``.
    grid_shape : tuple of int, optional
        Only for ``input_norm="token_affine"`` or ``layer_norm="token_affine"``.
    input_modes : int or tuple of int, optional
        Cosines per grid dimension of the coordinate-field input affine
        (``input_norm="coordinate"``).
    context_fit : {"none", "least_squares", "symmetric"}, default "none"
        As for :class:`~nips_plugin.NIPS` (``"none"``, the paper's model, by
        default): with a fit, the kernel layer ``Delta A W^P`` acts on the part of
        each input the context does not span.
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
        As for :class:`~nips_plugin.NIPS` (each layer then keeps no ``T x T`` attention).
    output_map_chunk_mb : float, default 256
        ``output_map="mlp"`` only: ``W^P`` is applied in chunks of output points whose MLP activations take
        at most about this many MB, so that the activations on all ``N x N``
        point pairs (about 200 floats each) are never all alive; under autograd each
        chunk is recomputed in the backward pass (``torch.utils.checkpoint``)
        when there is more than one. Same result for any value.
    coord_range : tuple of float, optional
        ``(a, b)``, the coordinates of the grid's end nodes along every axis, seen
        by the MLP ``W^P`` and defining ``Delta`` (the cosine ``W^P`` sees the
        nodes' relative positions, the same for any range). Default: the authors' choice for the
        class, ``(-1.0, 1.0)`` for NAO, ``(0.0, 1.0)`` for :class:`LinearNAO`.
    output_map_contract : {"first", "second"}, optional
        Which index of ``W^P[i, j] = W(x_i, x_j)`` the kernel layer sums over:
        ``"first"``, ``u[y] = sum_x W(x, y) V[x]`` (NAO's default), or
        ``"second"``, ``u[y] = sum_x W(y, x) V[x]`` (:class:`LinearNAO`'s).
    output_map_edges : {"grid", "transposed"}, default "grid"
        ``"transposed"``: the MLP's second point has its coordinates in reverse
        order, ``MLP(x, (y_2, y_1))`` in 2-D (the NAO folder's edges, built from
        the axis-swapped grid); ``output_map="mlp"`` only.
    layer_norm : {"feature", "token_affine"}, default "feature"
        ``LN_t`` of the intermediate layers: over each token's ``d`` features
        (``NAO_Darcy.py``), or over the whole ``[T, d]`` slab with a per-token
        affine like the input norm (the NAO folder's model; needs ``grid_shape``).
    output_map : {"mlp", "cosine"}, default "mlp"
        ``W^P`` as the authors' MLP of coordinate pairs (the paper's) or as a
        truncated cosine series (see Cost).
    output_map_modes : int or tuple of int, default 8
        ``output_map="cosine"``: cosines per grid dimension in each argument
        (``M = prod_i m_i``; ``(c_f + c_u) c_u M^2`` coefficients in all).
    attention_order : {"quadratic", "linear"}, optional
        Contraction order of every attention (see Cost); default: the class's,
        ``"quadratic"`` for NAO, ``"linear"`` for :class:`LinearNAO`.

    References
    ----------
    .. [1] Yu, Y., Liu, N., Lu, F., Gao, T., Jafarzadeh, S. and Silling, S.
       "Nonlocal Attention Operator: Materializing Hidden Knowledge Towards
       Interpretable Physics Discovery", NeurIPS 2024, arXiv:2408.07307.
    """

    #: default contraction order of every attention (``attention_order``); LinearNAO: "linear"
    _attention = "quadratic"
    #: the authors' defaults of the class (NAO_Darcy.py): see the class docstring
    _default_coord_range = (-1.0, 1.0)
    _default_output_map_contract = "first"

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
        n_dim: int = 2,
        input_norm: str = "slab",
        grid_shape: Optional[Sequence[int]] = None,
        checkpoint_layers: bool = False,
        output_map_chunk_mb: float = 256,
        coord_range: Optional[tuple[float, float]] = None,
        output_map_contract: Optional[str] = None,
        output_map_edges: str = "grid",
        layer_norm: str = "feature",
        input_modes: Optional[Union[int, Sequence[int]]] = None,
        context_fit: str = "none",
        shared_operator_modes: Optional[Union[int, Sequence[int]]] = None,
        output_map: str = "mlp",
        output_map_modes: Union[int, Sequence[int]] = 8,
        attention_order: Optional[str] = None,
    ) -> None:
        super().__init__()
        self._init_layout(in_channels, out_channels, n_pairs, in_components, out_components)
        if n_dim not in (1, 2, 3):
            raise ValueError(f"n_dim must be 1, 2 or 3, got {n_dim}")
        coord_range = self._default_coord_range if coord_range is None else coord_range
        if len(coord_range) != 2 or not coord_range[0] < coord_range[1]:
            raise ValueError(f"coord_range must be (a, b) with a < b, got {coord_range!r}")
        output_map_contract = output_map_contract or self._default_output_map_contract
        if output_map_contract not in ("first", "second"):
            raise ValueError(
                f"output_map_contract must be 'first' or 'second', got {output_map_contract!r}"
            )
        if output_map_edges not in ("grid", "transposed"):
            raise ValueError(
                f"output_map_edges must be 'grid' or 'transposed', got {output_map_edges!r}"
            )
        if output_map not in OUTPUT_MAPS:
            raise ValueError(f"output_map must be one of {OUTPUT_MAPS}, got {output_map!r}")
        if output_map == "cosine" and output_map_edges != "grid":
            raise ValueError(
                "output_map_edges='transposed' is a convention of the authors' MLP W^P: "
                "use it with output_map='mlp'"
            )
        self.n_dim, self.n_heads, self.qk_channels = n_dim, n_heads, qk_channels
        self.coord_range = (float(coord_range[0]), float(coord_range[1]))
        self.attention = attention_order or self._attention
        if self.attention not in ORDERS:
            raise ValueError(f"attention_order must be one of {ORDERS}, got {attention_order!r}")
        if isinstance(input_modes, int):
            input_modes = (input_modes,) * n_dim
        if input_modes is not None and len(input_modes) != n_dim:
            raise ValueError(
                f"input_modes must give {n_dim} ints (n_dim={n_dim}), got {input_modes!r}"
            )
        self._init_encoder(
            input_norm,
            grid_shape,
            n_layers,
            checkpoint_layers=checkpoint_layers,
            layer_norm=layer_norm,
            context_fit=context_fit,
            input_modes=None if input_modes is None else tuple(input_modes),
            shared_operator_modes=shared_operator_modes,
        )
        # "second": the output point is the kernel's first argument
        self._output_map_kwargs = dict(swap=output_map_contract == "second")
        self.kernel_query = TokenLinear(n_pairs, n_heads * qk_channels)
        if output_map == "mlp":
            # an int: torch.compile specialises it (a float attribute would become symbolic)
            self._output_map_kwargs["chunk_bytes"] = int(output_map_chunk_mb * 2**20)
            make = functools.partial(
                CoordinateKernel,
                n_dim,
                coord_range=self.coord_range,
                transposed=output_map_edges == "transposed",
            )
        else:
            modes = (
                (output_map_modes,) * n_dim
                if isinstance(output_map_modes, int)
                else output_map_modes
            )
            if len(modes) != n_dim or not all(isinstance(m, int) and m >= 1 for m in modes):
                raise ValueError(
                    f"output_map_modes must be a positive int or a tuple of {n_dim} "
                    f"positive ints, got {output_map_modes!r}"
                )
            make = functools.partial(CosineKernel, modes)
        self.output_map_f = make(rows=in_components, cols=out_components)
        self.output_map_u = make(rows=out_components, cols=out_components)

    def _kernel_queries(self, tokens: torch.Tensor, grid_shape: Sequence[int]) -> torch.Tensor:
        return self.kernel_query(tokens)

    def _map_output(self, values: torch.Tensor, grid_shape: Sequence[int]) -> torch.Tensor:
        """``Delta values W^P``: ``[..., T] -> [..., N*c_u]``, rows of ``W^P`` over the f-
        then u-tokens, columns over output points; ``W^P`` is never formed whole."""
        n_f = self.layout.in_components * math.prod(grid_shape)
        out = self.output_map_f.contract(values[..., :n_f], grid_shape, **self._output_map_kwargs)
        out = out + self.output_map_u.contract(
            values[..., n_f:], grid_shape, **self._output_map_kwargs
        )
        return quadrature_weight(grid_shape, self.coord_range) * out


class LinearNAO(NAO, name="linear_nao"):
    """NAO with linear-order attention (Yu et al., NeurIPS 2024; the NIPS paper's baseline).

    Intermediate layers as :class:`~nips_plugin.NIPS` without the Fourier filter,
    ``J <- LN_t(sum_h Q_h (Delta K_h^T J / sqrt(dk))) + J``; the kernel layer

    .. math:: \\hat u = \\Delta\\, [W^{P,f} \\,|\\, W^{P,u}]\\, Q
              \\big(\\Delta K_f^T f / \\sqrt{d_k}\\big),
              \\qquad W^{P}[y, x] = \\mathrm{MLP}(y, x),

    ``Q`` over all ``T`` tokens, ``K_f`` the keys of the f-tokens; the columns of
    ``W^{P,f}`` act on the f-token rows of ``Q``, those of ``W^{P,u}`` on the
    u-token rows. With the authors' MLP ``W^P`` (``output_map="mlp"``) the
    cost is that of the MLP on all ``N^2`` point pairs (applied in chunks of
    at most ``output_map_chunk_mb`` of activations); with ``output_map="cosine"`` the whole
    model is linear in ``T`` (see :class:`NAO`, Cost).

    Conventions. The authors' (``LinearNAO_Darcy.py``, checked against its
    recorded output), all defaults here: coordinates on ``[0, 1]`` and
    ``Delta = prod_i 1/(n_i - 1)`` (that grid's ``dx * dy``); ``W^P``
    contracted over its second index, the output point being the MLP's first
    argument (``output_map_contract="second"``, the transpose of NAO's);
    ``W^{P,f}`` is the script's ``kernel`` and ``W^{P,u}`` its ``kernelf``. As for
    NAO, only the input normalisation differs by default (per-feature affine,
    resolution independent). With ``coord_range=(-1, 1)`` and
    ``output_map_contract="first"`` the same weights give NAO's output.

    Parameters
    ----------
    Same as :class:`NAO` (defaults ``coord_range=(0.0, 1.0)``,
    ``output_map_contract="second"``, ``attention_order="linear"``).
    """

    _attention = "linear"
    _default_coord_range = (0.0, 1.0)
    _default_output_map_contract = "second"
