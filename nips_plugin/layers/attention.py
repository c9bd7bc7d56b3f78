"""Nonlocal attention blocks shared by NIPS, NAO and LinearNAO.

Layout. The residual stream of tokens is token-major, ``J`` of shape
``[B, T, d]`` (``T`` tokens, ``d`` features), so that the LayerNorms over
features and the residual sums run on contiguous memory. Queries and keys are
channel-first, ``[B, H*dk, T]`` (heads stacked), which is what the Fourier
filter transforms (grid dimensions last); functions here take channel-first
token views ``[B, d, T]`` (``J.mT``, no copy: the batched matmuls read either
layout).

With queries ``q`` ``[B, H*dk, T_q]``, keys ``k`` ``[B, H*dk, T_k]`` and values
``v`` ``[B, d_v, T_k]``, both attention forms compute

.. math:: \\mathrm{out}[:, t] = s \\sum_h \\sum_{t'} v[:, t']\\, k_h[:, t']^\\top q_h[:, t],

the un-normalised (softmax-free) attention of NAO/NIPS, where ``s`` carries the
quadrature weight and ``1/sqrt(dk)``. :func:`nonlocal_attention` contracts keys
with values first (cost linear in ``T``, never a ``T x T`` matrix) or, for
NAO, forms ``A = q^T k`` (:func:`quadratic_attention`, ``O(T^2)``); either
returns ``out`` token-major, ``[B, T_q, d_v]``.
"""

import math
from typing import Any, Optional, Sequence

import torch
from torch import nn
import torch.nn.functional as F

from .cosine_field import CosineField
from .fourier_kernel import SharedSpectralFilter


def _bmm_like(
    a: torch.Tensor, b: torch.Tensor, like: torch.Tensor, add: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """``a @ b (+ add)`` (``[B, m, k] @ [B, k, T]``, ``add`` broadcastable to ``[B, m, T]``)
    stored like ``like`` ``[B, m, T]``: token-major when ``like`` is a transposed view of
    token-major tokens. Gradients computed this way keep the layout of their tensor, so
    autograd sums them without strided copies."""
    if like.stride(-1) != 1:
        return (torch.bmm(b.mT, a.mT) if add is None else torch.baddbmm(add.mT, b.mT, a.mT)).mT
    return torch.bmm(a, b) if add is None else torch.baddbmm(add, a, b)


class _Gram(torch.autograd.Function):
    """Gram matrix and row sums of ``x`` ``[B, d, T]``: ``(x x^T, x 1)``. The backward
    ``(g + g^T) x + g_s 1^T`` is one batched matmul where autograd would run two (one
    per operand), and comes out in ``x``'s layout."""

    @staticmethod
    def forward(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.bmm(x, x.mT), x.sum(-1, keepdim=True)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor, grad_sum: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        # under autocast grad has the forward's reduced precision: match it, return x's dtype
        return _bmm_like(grad + grad.mT, x.to(grad.dtype), x, add=grad_sum.to(grad.dtype)).to(
            x.dtype
        )


class _LayoutBmm(torch.autograd.Function):
    """``torch.bmm(a, b)`` whose input gradients keep the memory layout of ``a`` and ``b``.

    Autograd's own come out contiguous in the operand's shape: for a transposed
    view (channel-first view of token-major tokens, or the token-major view of
    channel-first queries) that is a gradient in the other layout, which costs a
    transposed copy where it meets the others (residual sum, FFT input)."""

    @staticmethod
    def forward(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.bmm(a, b)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(
        ctx: Any, grad: torch.Tensor
    ) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        a, b = ctx.saved_tensors
        grad_a = grad_b = None
        # under autocast grad has the forward's reduced precision: match it, return input dtypes
        if ctx.needs_input_grad[0]:
            grad_a = _bmm_like(grad, b.to(grad.dtype).mT, a).to(a.dtype)
        if ctx.needs_input_grad[1]:
            grad_b = _bmm_like(a.to(grad.dtype).mT, grad, b).to(b.dtype)
        return grad_a, grad_b


def value_key_product(
    v: torch.Tensor, key_tokens: torch.Tensor, key: "TokenLinear"
) -> torch.Tensor:
    """``v K^T`` ``[B, d_v, H*dk]`` for the keys ``K = key(key_tokens)`` ``[B, H*dk, T]``.

    With ``K = W J + b`` (``J`` the key tokens, ``d`` features),
    ``v K^T = (v J^T) W^T + (v 1) b^T``. That order never forms ``K`` and needs
    ``d_v d`` instead of ``H dk (d + d_v)`` multiply-adds per token (forward, and
    likewise backward); it is used when it is the cheaper one, e.g. the
    intermediate layers' ``d_v = d < 2 H dk``, where ``v`` is ``J`` itself and
    ``J J^T`` a Gram matrix.

    Parameters
    ----------
    v : torch.Tensor ``[B, d_v, T]``
    key_tokens : torch.Tensor ``[B, d, T]``
    key : TokenLinear
        One group.

    Returns
    -------
    torch.Tensor ``[B, d_v, H*dk]``
    """
    d, dv = key_tokens.shape[1], v.shape[1]
    weight, bias = key.weight[0], key.bias[0]  # [H*dk, d], [H*dk, 1]
    if dv * d < weight.shape[0] * (d + dv):
        if v is key_tokens:
            vj, v_sum = _Gram.apply(v)  # [B, d, d], [B, d, 1]
        else:
            vj, v_sum = torch.bmm(v, key_tokens.mT), v.sum(-1, keepdim=True)
        return torch.matmul(vj, weight.T) + v_sum * bias.T
    return torch.bmm(v, key(key_tokens).mT)


def nonlocal_attention(
    q: torch.Tensor,
    key_tokens: torch.Tensor,
    v: torch.Tensor,
    key: "TokenLinear",
    scale: float,
    order: str = "linear",
) -> torch.Tensor:
    """Un-normalised attention ``out = s * sum_h (v K_h^T) q_h`` with keys ``K = key(key_tokens)``.

    Heads are stacked along the ``H*dk`` rows of ``q`` and ``K``, so one
    contraction over ``H*dk`` sums them.

    Parameters
    ----------
    q : torch.Tensor ``[B, H*dk, T_q]``
    key_tokens : torch.Tensor ``[B, d, T_k]``
    v : torch.Tensor ``[B, d_v, T_k]``
    key : TokenLinear
    scale : float
    order : {"linear", "quadratic"}
        ``"linear"``: ``(v K^T) q``, cost ``O(T)`` (see :func:`value_key_product`);
        ``"quadratic"``: :func:`quadratic_attention` (NAO).

    Returns
    -------
    torch.Tensor ``[B, T_q, d_v]``
        Token-major.
    """
    if order == "quadratic":
        return quadratic_attention(q, key(key_tokens), v, scale)
    vk = scale * value_key_product(v, key_tokens, key)  # small
    # token-major output; the gradient of q stays channel-first for the Fourier filter
    return _LayoutBmm.apply(q.mT, vk.mT)


def attention_matrix(q: torch.Tensor, k: torch.Tensor, scale: float) -> torch.Tensor:
    """The explicit head-summed attention ``A = s * sum_h q_h^T k_h``, ``[B, T_q, T_k]``."""
    # scale the small factor, so that only one T_q x T_k tensor is ever formed
    return torch.bmm((scale * q).mT, k)


def quadratic_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float
) -> torch.Tensor:
    """Quadratic-order attention (NAO): ``A = s q^T k`` then ``out = A v^T`` ``[B, T_q, d_v]``,
    the linear order's result at ``O(T_q T_k)`` memory; ``A`` is the only
    ``T_q x T_k`` tensor kept for the backward pass."""
    return torch.bmm(attention_matrix(q, k, scale), v.mT)


ORDERS = ("linear", "quadratic")


class TokenLinear(nn.Module):
    """A linear map of token features, ``[B, (G,) in, T] -> [B, G*out, T]``.

    ``nn.Linear`` acting on the feature (channel) dimension of channel-first tokens,
    with optionally ``G`` independent groups (one per filter group).

    Parameters
    ----------
    in_features, out_features : int
        Per group.
    groups : int, default 1
    """

    def __init__(self, in_features: int, out_features: int, groups: int = 1) -> None:
        super().__init__()
        self.groups = groups
        bound = 1.0 / math.sqrt(in_features)  # nn.Linear's default initialisation
        self.weight = nn.Parameter(
            torch.empty(groups, out_features, in_features).uniform_(-bound, bound)
        )
        self.bias = nn.Parameter(torch.empty(groups, out_features, 1).uniform_(-bound, bound))

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """The weight alone, ``W x`` (no bias), ``[B, (G,) in, T] -> [B, G*out, T]``."""
        if self.groups == 1:
            # torch.matmul would fold the batch of a transposed view of x, i.e. copy it
            return _LayoutBmm.apply(self.weight[0].expand(x.shape[0], -1, -1), x)
        return torch.matmul(self.weight, x).flatten(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.groups == 1:
            return self.project(x) + self.bias[0]
        return (torch.matmul(self.weight, x) + self.bias).flatten(1, 2)


def filtered_queries(
    tokens: torch.Tensor,
    grid_shape: Sequence[int],
    spectral_filter: SharedSpectralFilter,
    query: TokenLinear,
    n_sources: Optional[int] = None,
) -> torch.Tensor:
    """Queries ``W_Q F(J) + b`` of tokens ``J`` with a :class:`SharedSpectralFilter` ``F``.

    ``F`` acts on every channel alike, so ``W_Q F(J) = F(W_Q J)``: with one
    filter group and fewer query channels than features, the projection runs
    first and only the projected channels are transformed (the bias is added
    after the filter, which does not preserve constants).

    Parameters
    ----------
    tokens : torch.Tensor ``[B, d, C*N]``
        Channel-first (view) of ``J``.
    grid_shape : tuple of int
    spectral_filter : SharedSpectralFilter
    query : TokenLinear
        With ``spectral_filter.groups`` groups.
    n_sources : int, optional
        Passed to the filter (filter-and-sum of blocks).

    Returns
    -------
    torch.Tensor ``[B, H*dk, C_out*N]``
    """
    B, d, _ = tokens.shape
    groups = spectral_filter.groups
    if groups == 1 and query.weight.shape[1] < d:
        p = query.project(tokens)
        q = spectral_filter(p.view(B, p.shape[1], -1, *grid_shape), n_sources=n_sources)
        return q.reshape(B, p.shape[1], -1) + query.bias[0]
    Jq = spectral_filter(
        tokens.reshape(B, d, -1, *grid_shape), n_sources=n_sources
    )  # [B, d, G*C_out, *grid]
    if groups > 1:
        return query(Jq.view(B, d, groups, -1).transpose(1, 2))
    return query(Jq.reshape(B, d, -1))


class SlabNorm(nn.Module):
    """Input normalisation ``LN_0`` over the whole ``[T, d]`` token slab of each sample.

    ``LN_0(J)[t, j] = w[t, j] * (J[t, j] - mu) / sigma + b[t, j]``, ``mu`` and
    ``sigma`` over the whole slab; the affine ``(w, b)`` is one of:

    * per feature, ``w[t, j] = w_j`` (``2 d`` parameters): resolution
      independent, but the tokens carry no positional information;
    * per token (``n_tokens``), as in the authors' scripts (``2 T d``
      parameters): positional, but tied to one grid;
    * coordinate fields (``n_modes``): ``w[t, j] = w_{c,j}(x_t)``,
      ``b[t, j] = b_{c,j}(x_t)`` for token ``t`` at node ``x_t`` of block ``c``,
      learned continuous fields (:class:`~nips_plugin.layers.cosine_field.CosineField`):
      positional like the per-token affine, and defined at every resolution.

    Parameters
    ----------
    n_features : int
        ``d``.
    n_tokens : int, optional
        Per-token affine for this many tokens.
    n_blocks : int, optional
        Token blocks (``c_f + c_u``), with ``n_modes``.
    n_modes : tuple of int, optional
        Cosines per grid dimension of the coordinate fields.
    eps : float, default 1e-5
    """

    def __init__(
        self,
        n_features: int,
        n_tokens: Optional[int] = None,
        n_blocks: Optional[int] = None,
        n_modes: Optional[Sequence[int]] = None,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.n_tokens, self.n_blocks, self.eps = n_tokens, n_blocks, eps
        if n_modes is not None:
            if n_tokens is not None or not n_blocks:
                raise ValueError("coordinate fields need n_blocks and no n_tokens")
            self.weight_field = CosineField(n_blocks * n_features, n_modes, constant=1.0)
            self.bias_field = CosineField(n_blocks * n_features, n_modes)
            return
        # stored [d, T] (the layout of the first checkpoints); applied to token-major input
        shape = (n_features,) if n_tokens is None else (n_features, n_tokens)
        self.weight = nn.Parameter(torch.ones(shape))
        self.bias = nn.Parameter(torch.zeros(shape))

    def _token_fields(self, grid_shape: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The coordinate fields as token-major ``[T, d]`` weight and bias."""

        def tokens(field: CosineField) -> torch.Tensor:
            values = field(grid_shape).reshape(self.n_blocks, -1, math.prod(grid_shape))
            return values.transpose(1, 2).reshape(-1, values.shape[1])

        return tokens(self.weight_field), tokens(self.bias_field)

    def forward(self, x: torch.Tensor, grid_shape: Optional[Sequence[int]] = None) -> torch.Tensor:
        """Normalise token-major ``x`` ``[B, T, d]`` (``grid_shape``: for coordinate fields)."""
        if self.n_blocks:
            weight, bias = self._token_fields(grid_shape)
            return torch.addcmul(bias, F.layer_norm(x, tuple(x.shape[1:]), eps=self.eps), weight)
        if self.n_tokens is None:
            return torch.addcmul(
                self.bias, F.layer_norm(x, tuple(x.shape[1:]), eps=self.eps), self.weight
            )
        if x.shape[1] != self.n_tokens:
            raise ValueError(
                f"this model's input normalisation has a per-token affine for {self.n_tokens} "
                f"tokens (a fixed grid), got {x.shape[1]} tokens: use the grid it was built for"
            )
        return F.layer_norm(x, tuple(x.shape[1:]), self.weight.T, self.bias.T, self.eps)


class NonlocalAttentionLayer(nn.Module):
    """One intermediate layer ``J <- LN(sum_h A_h(J)) + J`` of NIPS / NAO / LinearNAO.

    ``A_h(J) = Q_h (Delta K_h^T J / sqrt(dk))`` with ``K_h = J W_K^h + b``, and
    ``Q_h = F(J) W_Q^h + b`` where ``F`` is NIPS's channel-shared Fourier filter
    (identity for NAO/LinearNAO). ``Delta`` is the quadrature weight of the grid.

    Parameters
    ----------
    n_features : int
        ``d``, the number of context pairs.
    n_blocks : int
        Token blocks ``C = c_f + c_u`` (field components).
    n_heads, qk_channels : int
        ``H`` and ``dk``.
    attention : {"linear", "quadratic"}
        Contraction order.
    n_modes : tuple of int or None
        Fourier modes of the query filter; None for no filter.
    filter_per_head : bool
        One filter per head instead of one per layer.
    norm_tokens : int or None, default None
        None: ``LN`` normalises each token over its ``d`` features (the NIPS-folder
        scripts). An int ``T``: ``LN`` normalises the whole ``[T, d]`` slab with a
        per-token affine (:class:`SlabNorm`, as the NAO folder's model at every
        layer; ties the layer to one grid).
    """

    def __init__(
        self,
        n_features: int,
        n_blocks: int,
        n_heads: int,
        qk_channels: int,
        attention: str = "linear",
        n_modes: Optional[Sequence[int]] = None,
        filter_per_head: bool = False,
        norm_tokens: Optional[int] = None,
    ) -> None:
        super().__init__()
        self.n_heads, self.qk_channels = n_heads, qk_channels
        groups = n_heads if (filter_per_head and n_modes is not None) else 1
        self.filter = (
            SharedSpectralFilter(n_blocks, n_modes, groups=groups) if n_modes is not None else None
        )
        self.query = TokenLinear(n_features, n_heads * qk_channels // groups, groups=groups)
        self.key = TokenLinear(n_features, n_heads * qk_channels)
        self.norm = (
            nn.LayerNorm(n_features) if norm_tokens is None else SlabNorm(n_features, norm_tokens)
        )
        if attention not in ORDERS:
            raise ValueError(f"attention must be one of {ORDERS}, got {attention!r}")
        self.attention = attention

    def forward(
        self, J: torch.Tensor, grid_shape: Sequence[int], quadrature: float
    ) -> torch.Tensor:
        """Token-major ``J`` ``[B, T, d]`` with ``T = C * prod(grid_shape)`` -> same shape."""
        # one channel-first view for every use: their gradients (kept in this layout by
        # _LayoutBmm and _Gram) are summed contiguously and transposed back as a view
        tokens = J.mT
        if self.filter is None:
            q = self.query(tokens)
        else:
            q = filtered_queries(tokens, grid_shape, self.filter, self.query)
        scale = quadrature / math.sqrt(self.qk_channels)
        return J + self.norm(nonlocal_attention(q, tokens, tokens, self.key, scale, self.attention))
