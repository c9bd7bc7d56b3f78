"""The in-context channel layout shared by every model of the zoo.

One sample packs a context of ``d`` input/response pairs of one system and
``q >= 0`` query inputs into the channels of a single tensor, so that NIPS,
NAO and plain FNO/TFNO consume identical batches::

    x = cat([f_ctx.reshape(B, d*c_f, *grid),    # context inputs
             u_ctx.reshape(B, d*c_u, *grid),    # context responses
             f_qry.reshape(B, q*c_f, *grid)],   # query inputs
            dim=1)
    y = u_qry.reshape(B, q*c_u, *grid)          # query responses

Channels are pair-major: channel ``j*c + k`` is pair ``j``, component ``k``.
"""

from dataclasses import dataclass
from typing import Any, Optional

import torch


@dataclass(frozen=True)
class ContextLayout:
    """Channel bookkeeping of one packed in-context tensor.

    Parameters
    ----------
    n_pairs : int
        Number of context pairs ``d``.
    in_components : int
        Components ``c_f`` of an input function.
    out_components : int
        Components ``c_u`` of a response function.
    n_queries : int
        Number of query inputs ``q`` (0: the model reconstructs the context).
    """

    n_pairs: int
    in_components: int = 1
    out_components: int = 1
    n_queries: int = 0

    @property
    def in_channels(self) -> int:
        """Channels of the packed input ``x``."""
        d, cf, cu, q = self.n_pairs, self.in_components, self.out_components, self.n_queries
        return d * (cf + cu) + q * cf

    @property
    def out_channels(self) -> int:
        """Channels of the model output: ``q*c_u``, or ``d*c_u`` when ``q = 0``."""
        return (self.n_queries or self.n_pairs) * self.out_components

    def describe(self) -> str:
        d, cf, cu, q = self.n_pairs, self.in_components, self.out_components, self.n_queries
        return (
            f"{d} context pairs x ({cf} input + {cu} response components) "
            f"+ {q} queries x {cf} input components = {self.in_channels} channels"
        )

    @classmethod
    def from_channels(
        cls, channels: int, n_pairs: int, in_components: int = 1, out_components: int = 1
    ) -> "ContextLayout":
        """Infer the number of queries from a channel count, or raise a clear error."""
        for name, value in (
            ("n_pairs", n_pairs),
            ("in_components", in_components),
            ("out_components", out_components),
        ):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        base = n_pairs * (in_components + out_components)
        extra = channels - base
        if extra < 0 or extra % in_components:
            raise ValueError(
                f"Got {channels} input channels, which does not match the in-context layout "
                f"[f_ctx (d*c_f), u_ctx (d*c_u), f_query (q*c_f)] with d={n_pairs}, "
                f"c_f={in_components}, c_u={out_components}: expected "
                f"{base} + q*{in_components} channels for some q >= 0."
            )
        return cls(n_pairs, in_components, out_components, extra // in_components)


def _check_fields(name: str, t: Any, n_lead_dims: int = 2) -> None:
    if not torch.is_tensor(t):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.ndim < n_lead_dims + 2:
        raise ValueError(
            f"{name} must be shaped [B, n_functions, components, *grid] with a 1-D to 3-D "
            f"grid, got shape {tuple(t.shape)}"
        )


def pack_context(
    f_ctx: torch.Tensor, u_ctx: torch.Tensor, f_query: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Pack context pairs (and optional query inputs) into one channel tensor.

    Parameters
    ----------
    f_ctx : torch.Tensor
        Context inputs, ``[B, d, c_f, *grid]``.
    u_ctx : torch.Tensor
        Context responses, ``[B, d, c_u, *grid]``.
    f_query : torch.Tensor, optional
        Query inputs, ``[B, q, c_f, *grid]``.

    Returns
    -------
    torch.Tensor
        ``x`` of shape ``[B, d*c_f + d*c_u + q*c_f, *grid]``.
    """
    _check_fields("f_ctx", f_ctx)
    _check_fields("u_ctx", u_ctx)
    B, d, _, *grid = f_ctx.shape
    if u_ctx.shape[:2] != f_ctx.shape[:2] or list(u_ctx.shape[3:]) != grid:
        raise ValueError(
            f"u_ctx {tuple(u_ctx.shape)} must share batch, pair count and grid with "
            f"f_ctx {tuple(f_ctx.shape)}"
        )
    parts = [f_ctx.reshape(B, -1, *grid), u_ctx.reshape(B, -1, *grid)]
    if f_query is not None:
        _check_fields("f_query", f_query)
        if f_query.shape[0] != B or f_query.shape[2:] != f_ctx.shape[2:]:
            raise ValueError(
                f"f_query {tuple(f_query.shape)} must share batch, components and grid "
                f"with f_ctx {tuple(f_ctx.shape)}"
            )
        parts.append(f_query.reshape(B, -1, *grid))
    return torch.cat(parts, dim=1)


def unpack_context(
    x: torch.Tensor, n_pairs: int, in_components: int = 1, out_components: int = 1
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inverse of :func:`pack_context`.

    Parameters
    ----------
    x : torch.Tensor
        Packed tensor ``[B, d*c_f + d*c_u + q*c_f, *grid]``.
    n_pairs, in_components, out_components : int
        ``d``, ``c_f`` and ``c_u``.

    Returns
    -------
    f_ctx, u_ctx, f_query : torch.Tensor
        ``[B, d, c_f, *grid]``, ``[B, d, c_u, *grid]`` and ``[B, q, c_f, *grid]``
        (``q`` may be 0). These are views of ``x`` where possible.
    """
    layout = ContextLayout.from_channels(x.shape[1], n_pairs, in_components, out_components)
    B, _, *grid = x.shape
    d, cf, cu, q = n_pairs, in_components, out_components, layout.n_queries
    f_ctx, u_ctx, f_query = torch.split(x, [d * cf, d * cu, q * cf], dim=1)
    return (
        f_ctx.reshape(B, d, cf, *grid),
        u_ctx.reshape(B, d, cu, *grid),
        f_query.reshape(B, q, cf, *grid),
    )


def pack_responses(u: torch.Tensor) -> torch.Tensor:
    """Pack response functions ``[B, n, c_u, *grid]`` into ``[B, n*c_u, *grid]``."""
    _check_fields("u", u)
    return u.reshape(u.shape[0], -1, *u.shape[3:])


def unpack_responses(y: torch.Tensor, out_components: int = 1) -> torch.Tensor:
    """Inverse of :func:`pack_responses`: ``[B, n*c_u, *grid] -> [B, n, c_u, *grid]``."""
    if y.shape[1] % out_components:
        raise ValueError(
            f"{y.shape[1]} response channels is not a multiple of out_components={out_components}"
        )
    return y.reshape(y.shape[0], -1, out_components, *y.shape[2:])
