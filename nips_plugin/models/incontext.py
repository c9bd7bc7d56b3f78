"""What NIPS, NAO and LinearNAO share: reading a packed context, the token
encoder and the final kernel layer ``u = K f``.

Each model composes :class:`~nips_plugin.layers.attention.NonlocalAttentionLayer`
blocks and only defines how its kernel layer forms queries (and, for NAO, the
learned output map ``W^P``). This mixin is not a ``BaseModel`` itself, so it is
not registered in neuraloperator's zoo.
"""

import math
from typing import Any, Optional, Sequence, Union

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..layers.attention import (
    NonlocalAttentionLayer,
    SlabNorm,
    TokenLinear,
    attention_matrix,
    nonlocal_attention,
)
from ..layers.context import ContextLayout
from ..layers.context_fit import MODES as CONTEXT_FITS, ContextFit
from ..layers.sine_operator import SineSeriesOperator


def quadrature_weight(
    grid_shape: Sequence[int], coord_range: tuple[float, float] = (0.0, 1.0)
) -> float:
    """Cell volume ``Delta = prod_i (b - a)/(n_i - 1)`` of a node grid on the cube ``[a, b]^D``.

    ``coord_range = (a, b)``: the unit cube by default; the authors' NAO scripts
    use ``(-1, 1)``, whose ``dx * dy`` is ``4/(n-1)^2`` in 2-D.
    """
    if min(grid_shape) < 2:
        raise ValueError(f"every grid dimension needs at least 2 points, got {tuple(grid_shape)}")
    length = coord_range[1] - coord_range[0]
    return math.prod([length / (n - 1) for n in grid_shape])  # a list: torch.compile traces it


class InContextOperator:
    """Mixin for attention-based in-context operators (see module docstring).

    Subclasses set, in ``__init__``: ``self.layout`` (:class:`ContextLayout` of the
    constructor's channels), ``self.n_dim``, ``self.n_heads``, ``self.qk_channels``,
    ``self.attention`` ("linear" | "quadratic"), ``self.input_norm``
    (:class:`SlabNorm`), ``self.layers`` (``nn.ModuleList`` of intermediate
    layers), ``self.kernel_key`` (:class:`TokenLinear`), and implement
    ``_kernel_queries(tokens, grid_shape) -> [B, H*dk, R]`` (``tokens``: channel-first
    ``[B, d, T]``) and
    ``_map_output(values, grid_shape)``, which maps kernel outputs ``[..., R]`` to
    ``[..., N*c_u]`` (the identity when ``R = N*c_u``). ``coord_range`` (class
    default: the unit cube) is the coordinate range of every grid axis; every
    quadrature weight ``Delta`` is that grid's cell volume.
    """

    coord_range = (0.0, 1.0)

    def _init_layout(
        self,
        in_channels: int,
        out_channels: int,
        n_pairs: int,
        in_components: int,
        out_components: int,
    ) -> None:
        self.layout = ContextLayout.from_channels(
            in_channels, n_pairs, in_components, out_components
        )
        if out_channels != self.layout.out_channels:
            raise ValueError(
                f"out_channels={out_channels} does not match the in-context layout: "
                f"{self.layout.describe()} gives {self.layout.out_channels} output channels "
                f"(q*c_u for q > 0 queries, d*c_u when q = 0)"
            )

    def _init_encoder(
        self,
        input_norm: str,
        grid_shape: Optional[Sequence[int]],
        n_layers: int,
        n_modes: Optional[tuple[int, ...]] = None,
        filter_per_head: bool = False,
        checkpoint_layers: bool = False,
        layer_norm: str = "feature",
        context_fit: str = "none",
        input_modes: Optional[tuple[int, ...]] = None,
        shared_operator_modes: Optional[Union[int, Sequence[int]]] = None,
    ) -> None:
        """``n_modes``: the intermediate layers' Fourier filter (None: no filter);
        ``input_modes``: cosines of the coordinate-field input affine (default ``n_modes``);
        ``shared_operator_modes``: sines of the shared operator (None: none)."""
        input_modes = n_modes if input_modes is None else input_modes
        cf, cu, d = self.layout.in_components, self.layout.out_components, self.layout.n_pairs
        if context_fit not in CONTEXT_FITS:
            raise ValueError(f"context_fit must be one of {CONTEXT_FITS}, got {context_fit!r}")
        if context_fit == "symmetric" and cf != cu:
            raise ValueError(
                f"context_fit='symmetric' needs in_components == out_components, got {cf} and {cu}"
            )
        self.context_fit = context_fit
        if shared_operator_modes is not None:
            if context_fit == "none":
                raise ValueError(
                    "shared_operator_modes needs a context_fit (its scale comes from the context)"
                )
            shared_operator_modes = (
                (shared_operator_modes,) * self.n_dim
                if isinstance(shared_operator_modes, int)
                else tuple(shared_operator_modes)
            )
            if len(shared_operator_modes) != self.n_dim:
                raise ValueError(
                    f"shared_operator_modes must give {self.n_dim} ints, got {shared_operator_modes!r}"
                )
            self.shared_operator = SineSeriesOperator(cf, cu, shared_operator_modes)
        else:
            self.shared_operator = None

        def n_tokens(option: str) -> int:
            if grid_shape is None or len(grid_shape) != self.n_dim:
                raise ValueError(
                    f"{option}='token_affine' needs grid_shape, a tuple of {self.n_dim} ints, "
                    f"got {grid_shape!r}"
                )
            return (cf + cu) * math.prod(grid_shape)

        if input_norm == "coordinate" and input_modes is not None:
            self.input_norm = SlabNorm(d, n_blocks=cf + cu, n_modes=input_modes)
        elif input_norm == "token_affine":
            self.input_norm = SlabNorm(d, n_tokens=n_tokens("input_norm"))
        elif input_norm == "slab":
            self.input_norm = SlabNorm(d)
        else:
            norms = "'slab', 'token_affine'" + (
                " or 'coordinate'" if input_modes is not None else ""
            )
            raise ValueError(f"input_norm must be {norms}, got {input_norm!r}")
        if layer_norm not in ("feature", "token_affine"):
            raise ValueError(f"layer_norm must be 'feature' or 'token_affine', got {layer_norm!r}")
        norm_tokens = n_tokens("layer_norm") if layer_norm == "token_affine" else None
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        self.layers = nn.ModuleList(
            NonlocalAttentionLayer(
                d,
                cf + cu,
                self.n_heads,
                self.qk_channels,
                self.attention,
                n_modes=n_modes,
                filter_per_head=filter_per_head,
                norm_tokens=norm_tokens,
            )
            for _ in range(n_layers - 1)
        )
        self.kernel_key = TokenLinear(d, self.n_heads * self.qk_channels)
        self.checkpoint_layers = bool(checkpoint_layers)

    def _read(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, ContextLayout]:
        """Validate ``x`` and split it into ``(f_ctx, u_ctx, f_query, layout)``,
        each ``[B, n, c, *grid]``."""
        if not torch.is_tensor(x) or x.ndim != self.n_dim + 2:
            raise ValueError(
                f"{type(self).__name__} is {self.n_dim}-D: expected x of shape "
                f"[batch, channels, {', '.join('n%d' % i for i in range(1, self.n_dim + 1))}], "
                f"got {tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}"
            )
        lay = self.layout
        layout = ContextLayout.from_channels(
            x.shape[1], lay.n_pairs, lay.in_components, lay.out_components
        )
        B, _, *grid = x.shape
        d, cf, cu, q = layout.n_pairs, layout.in_components, layout.out_components, layout.n_queries
        f_ctx, u_ctx, f_query = torch.split(x, [d * cf, d * cu, q * cf], dim=1)
        return (
            f_ctx.reshape(B, d, cf, *grid),
            u_ctx.reshape(B, d, cu, *grid),
            f_query.reshape(B, q, cf, *grid),
            layout,
        )

    def _encode(self, f_ctx: torch.Tensor, u_ctx: torch.Tensor) -> torch.Tensor:
        """Tokens of the context after the intermediate layers, token-major ``[B, T, d]``."""
        B, d, _, *grid = f_ctx.shape
        J = torch.cat([f_ctx.reshape(B, d, -1).mT, u_ctx.reshape(B, d, -1).mT], dim=1)
        J = self.input_norm(J, grid)
        delta = quadrature_weight(grid, self.coord_range)
        recompute = self.checkpoint_layers and torch.is_grad_enabled()
        for layer in self.layers:
            if recompute:
                J = checkpoint(layer, J, grid, delta, use_reentrant=False)
            else:
                J = layer(J, grid, delta)
        return J

    def _kernel_factors(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[int, ...], Optional[ContextFit]]:
        """Queries ``[B, H*dk, R]``, the f-tokens the keys are made of (channel-first view
        ``[B, d, N*c_f]``), the function values the kernel acts on ``[B, m, N*c_f]``, the
        grid and the :class:`ContextFit` of the context (None without ``context_fit``)."""
        f_ctx, u_ctx, f_query, layout = self._read(x)
        grid = f_ctx.shape[3:]
        J = self._encode(f_ctx, u_ctx)
        n_f = layout.in_components * math.prod(grid)
        queries = self._kernel_queries(J.mT, grid)
        f = f_query if layout.n_queries else f_ctx
        fit = (
            None
            if self.context_fit == "none"
            else ContextFit(f_ctx.flatten(2), u_ctx.flatten(2), self.context_fit)
        )
        # slice J itself: the gradient of a slice of the transposed view would be a
        # channel-first buffer, and every residual gradient would follow that layout
        return queries, J[:, :n_f].mT, f.flatten(2), grid, fit

    def forward(self, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Predict the responses to the queries in ``x`` (or reconstruct the context responses).

        With ``context_fit`` the learned kernel acts on the part of each input
        the context does not span, added to the context's exact least-squares
        (or symmetric) part (:class:`~nips_plugin.layers.context_fit.ContextFit`).

        Parameters
        ----------
        x : torch.Tensor
            Packed in-context tensor ``[B, d*c_f + d*c_u + q*c_f, *grid]``.
        **kwargs
            Ignored (neuraloperator's Trainer passes the whole batch).

        Returns
        -------
        torch.Tensor
            ``[B, q*c_u, *grid]`` for ``q > 0``, else ``[B, d*c_u, *grid]``.
        """
        queries, key_tokens, f, grid, fit = self._kernel_factors(x)
        scale = quadrature_weight(grid, self.coord_range) / math.sqrt(self.qk_channels)
        values = f if fit is None else fit.residual(f)
        u = self._map_output(
            nonlocal_attention(
                queries, key_tokens, values, self.kernel_key, scale, self.attention
            ).mT,
            grid,
        )
        prior = self._shared_term(fit, values, grid)
        if prior is not None:
            u = u + prior
        if fit is not None:
            u = fit.predict(f, u)
        return u.reshape(u.shape[0], -1, *grid)

    def extract_kernel(self, x: torch.Tensor) -> torch.Tensor:
        """The operator matrix ``M`` built from the context in ``x``, with ``u_hat = M f``.

        Parameters
        ----------
        x : torch.Tensor
            Packed in-context tensor (query channels, if any, are ignored).

        Returns
        -------
        torch.Tensor
            ``[B, N*c_u, N*c_f]``; rows and columns are component-major, grid
            row-major, i.e. ``M @ f.reshape(B, -1, 1)`` for ``f`` ``[B, c_f, *grid]``
            gives the response reshaped the same way. In the model's (normalised)
            units; includes the quadrature weight.
        """
        queries, key_tokens, _, grid, fit = self._kernel_factors(x)
        scale = quadrature_weight(grid, self.coord_range) / math.sqrt(self.qk_channels)
        M = attention_matrix(queries, self.kernel_key(key_tokens), scale)
        M = self._map_output(M.transpose(1, 2), grid).transpose(1, 2)
        if self.shared_operator is not None:
            # the shared term's rows for the identity's rows are its matrix transposed
            eye = torch.eye(M.shape[2], dtype=M.dtype, device=M.device)[None].expand(
                M.shape[0], -1, -1
            )
            M = M + self._shared_term(fit, eye, grid).mT
        return M if fit is None else fit.kernel(M)

    def _shared_term(
        self, fit: Optional[ContextFit], rows: torch.Tensor, grid: Sequence[int]
    ) -> Optional[torch.Tensor]:
        """The shared operator at this context's scale applied to ``rows`` ``[B, m, N*c_f]``
        (:meth:`ContextFit.operator_scale`); None without one."""
        if self.shared_operator is None:
            return None
        return fit.operator_scale(lambda r: self.shared_operator(r, grid)) * self.shared_operator(
            rows, grid
        )
