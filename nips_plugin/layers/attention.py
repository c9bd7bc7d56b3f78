"""Nonlocal attention blocks shared by NIPS, NAO and LinearNAO.

Layout. Tokens are kept channel-first, ``J`` of shape ``[B, d, T]`` (``d``
features per token, ``T`` tokens), which is the packed data's own layout
(pair-major channels over the grid): no transposes between the data, the
FFTs and the matmuls. Projections produce ``[B, H*dk, T]`` (heads stacked).

With queries ``q`` ``[B, H*dk, T_q]``, keys ``k`` ``[B, H*dk, T_k]`` and values
``v`` ``[B, d_v, T_k]``, both attention forms compute

.. math:: \\mathrm{out}[:, t] = s \\sum_h \\sum_{t'} v[:, t']\\, k_h[:, t']^\\top q_h[:, t],

the un-normalised (softmax-free) attention of NAO/NIPS, where ``s`` carries the
quadrature weight and ``1/sqrt(dk)``. :func:`linear_attention` contracts keys
with values first (cost ``O(T H dk d_v)``, never a ``T x T`` matrix);
:func:`quadratic_attention` forms ``A = q^T k`` (``O(T^2)``), as NAO does.
"""

import math

import torch
from torch import nn
import torch.nn.functional as F

from .fourier_kernel import SharedSpectralFilter


def linear_attention(q, k, v, scale, n_heads):
    """Linear-order attention ``out = s * sum_h (v k_h^T) q_h``.

    Parameters
    ----------
    q : torch.Tensor ``[B, H*dk, T_q]``
    k : torch.Tensor ``[B, H*dk, T_k]``
    v : torch.Tensor ``[B, d_v, T_k]``
    scale : float
    n_heads : int

    Returns
    -------
    torch.Tensor ``[B, d_v, T_q]``
    """
    B, hdk, _ = k.shape
    dv = v.shape[1]
    kv = torch.matmul(k.view(B, n_heads, hdk // n_heads, -1), v.transpose(1, 2).unsqueeze(1))
    # scale the small [B, H, dk, dv] factor, then lay it out as [B, dv, H*dk] so that
    # all heads are summed by one matmul
    vk = (scale * kv).permute(0, 3, 1, 2).reshape(B, dv, hdk)
    return torch.matmul(vk, q)


def attention_matrix(q, k, scale):
    """The explicit head-summed attention ``A = s * sum_h q_h^T k_h``, ``[B, T_q, T_k]``."""
    return scale * torch.matmul(q.transpose(1, 2), k)


def quadratic_attention(q, k, v, scale, n_heads=None):
    """Quadratic-order attention (NAO): ``A = s q^T k`` then ``out = v A^T``; same result
    as :func:`linear_attention` at ``O(T_q T_k)`` memory."""
    return torch.matmul(v, attention_matrix(q, k, scale).transpose(1, 2))


ATTENTION = {"linear": linear_attention, "quadratic": quadratic_attention}


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

    def __init__(self, in_features, out_features, groups=1):
        super().__init__()
        self.groups = groups
        bound = 1.0 / math.sqrt(in_features)  # nn.Linear's default initialisation
        self.weight = nn.Parameter(torch.empty(groups, out_features, in_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(groups, out_features, 1).uniform_(-bound, bound))

    def forward(self, x):
        if self.groups == 1:
            return torch.matmul(self.weight[0], x) + self.bias[0]
        B, G, _, T = x.shape
        return (torch.matmul(self.weight, x) + self.bias).reshape(B, -1, T)


def feature_layer_norm(x, norm):
    """Apply ``nn.LayerNorm`` ``norm`` over the feature dimension of ``[B, d, T]`` tokens."""
    return norm(x.transpose(1, 2)).transpose(1, 2)


class SlabNorm(nn.Module):
    """Input normalisation ``LN_0`` over the whole ``[d, T]`` token slab of each sample.

    Parameters
    ----------
    n_features : int
        ``d``.
    n_tokens : int or None
        If given, a per-token, per-feature affine (``2*T*d`` parameters) as in the
        authors' scripts (ties the model to one grid). If None, a per-feature affine
        (``2*d`` parameters, resolution independent).
    eps : float, default 1e-5
    """

    def __init__(self, n_features, n_tokens=None, eps=1e-5):
        super().__init__()
        shape = (n_features,) if n_tokens is None else (n_features, n_tokens)
        self.weight = nn.Parameter(torch.ones(shape))
        self.bias = nn.Parameter(torch.zeros(shape))
        self.n_tokens = n_tokens
        self.eps = eps

    def forward(self, x):
        if self.n_tokens is None:
            # one group over (d, T) with a per-channel affine is exactly this norm
            return F.group_norm(x, 1, self.weight, self.bias, self.eps)
        if x.shape[-1] != self.n_tokens:
            raise ValueError(
                f"this model's input normalisation has a per-token affine for {self.n_tokens} "
                f"tokens (a fixed grid), got {x.shape[-1]} tokens: use the grid it was built for"
            )
        return F.layer_norm(x, tuple(x.shape[1:]), self.weight, self.bias, self.eps)


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
    """

    def __init__(self, n_features, n_blocks, n_heads, qk_channels, attention="linear",
                 n_modes=None, filter_per_head=False):
        super().__init__()
        self.n_heads, self.qk_channels = n_heads, qk_channels
        groups = n_heads if (filter_per_head and n_modes is not None) else 1
        self.filter = SharedSpectralFilter(n_blocks, n_modes, groups=groups) if n_modes is not None else None
        self.query = TokenLinear(n_features, n_heads * qk_channels // groups, groups=groups)
        self.key = TokenLinear(n_features, n_heads * qk_channels)
        self.norm = nn.LayerNorm(n_features)
        self.attend = ATTENTION[attention]

    def forward(self, J, grid_shape, quadrature):
        """``J`` ``[B, d, T]`` with ``T = C * prod(grid_shape)`` -> same shape."""
        Jq = J
        if self.filter is not None:
            B, d, _ = J.shape
            Jq = self.filter(J.view(B, d, -1, *grid_shape))
            if self.filter.groups > 1:
                Jq = Jq.view(B, d, self.filter.groups, -1).transpose(1, 2)
            else:
                Jq = Jq.reshape(B, d, -1)
        scale = quadrature / math.sqrt(self.qk_channels)
        out = self.attend(self.query(Jq), self.key(J), J, scale, self.n_heads)
        return feature_layer_norm(out, self.norm) + J
