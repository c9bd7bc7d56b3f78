"""Nonlocal Attention Operator (NAO) and its linear-attention variant (LinearNAO)."""

import math

from neuralop.models.base_model import BaseModel

from ..layers.attention import TokenLinear
from ..layers.coordinate_kernel import CoordinateKernel
from .incontext import InContextOperator, quadrature_weight


class NAO(InContextOperator, BaseModel, name="nao"):
    """Nonlocal Attention Operator (Yu et al., NeurIPS 2024).

    Same tokens and normalisations as :class:`~nips_plugin.NIPS`, without a
    Fourier filter (``Q = J W_Q``). Intermediate layers form the explicit
    ``T x T`` attention ``A = sum_h Q_h K_h^T / sqrt(dk)`` and update
    ``J <- LN_t(Delta A J) + J``. The kernel layer uses ``A`` restricted to the
    f-token columns and a learned, continuous output map ``W^P``:

    .. math::

        V = \\Delta A_{[:, f]} f \\in R^{T \\times m},\\qquad
        \\hat u[y] = \\Delta \\sum_x W^P[x, y]\\, V[x],

    with ``W^P = [W^{P,1}; W^{P,2}]`` (rows over the f- and u-tokens) generated
    by MLPs of coordinate pairs, ``W^P[x, y] = MLP(x, y)``. Memory ``O(T^2)``.

    Parameters
    ----------
    in_channels, out_channels, n_pairs, in_components, out_components, n_layers, n_heads, qk_channels
        As for :class:`~nips_plugin.NIPS`.
    n_dim : int, default 2
        Grid dimension (1, 2 or 3).
    input_norm : {"slab", "token_affine"}, default "slab"
    grid_shape : tuple of int, optional
        Only for ``input_norm="token_affine"``.
    checkpoint_layers : bool, default False
        As for :class:`~nips_plugin.NIPS` (each layer then keeps no ``T x T`` attention).
    output_map_chunk_mb : float, default 256
        ``W^P`` is applied in chunks of output points whose MLP activations take
        at most about this many MB, so that the activations on all ``N x N``
        point pairs (about 200 floats each) are never all alive; under autograd each
        chunk is recomputed in the backward pass (``torch.utils.checkpoint``)
        when there is more than one. Same result for any value.

    References
    ----------
    .. [1] Yu, Y., Liu, N., Lu, F., Gao, T., Jafarzadeh, S. and Silling, S.
       "Nonlocal Attention Operator: Materializing Hidden Knowledge Towards
       Interpretable Physics Discovery", NeurIPS 2024, arXiv:2408.07307.
    """

    #: contraction order of every attention; LinearNAO: "linear"
    _attention = "quadratic"
    #: W^P coordinates: NAO contracts W's first index (MLP(x, y), y the output point)
    _swap_output_map = False
    _coord_range = (-1.0, 1.0)

    def __init__(self, in_channels, out_channels, n_pairs, in_components=1, out_components=1,
                 n_layers=4, n_heads=1, qk_channels=40, n_dim=2, input_norm="slab", grid_shape=None,
                 checkpoint_layers=False, output_map_chunk_mb=256):
        super().__init__()
        self._init_layout(in_channels, out_channels, n_pairs, in_components, out_components)
        if n_dim not in (1, 2, 3):
            raise ValueError(f"n_dim must be 1, 2 or 3, got {n_dim}")
        self.n_dim, self.n_heads, self.qk_channels = n_dim, n_heads, qk_channels
        self.attention = self._attention
        self._init_encoder(input_norm, grid_shape, n_layers, checkpoint_layers=checkpoint_layers)
        # an int: torch.compile specialises it (a float attribute would become symbolic)
        self._output_map_chunk_bytes = int(output_map_chunk_mb * 2**20)
        self.kernel_query = TokenLinear(n_pairs, n_heads * qk_channels)
        self.output_map_f = CoordinateKernel(n_dim, in_components, out_components, self._coord_range)
        self.output_map_u = CoordinateKernel(n_dim, out_components, out_components, self._coord_range)

    def _kernel_queries(self, tokens, grid_shape):
        return self.kernel_query(tokens)

    def _map_output(self, values, grid_shape):
        """``Delta values W^P``: ``[..., T] -> [..., N*c_u]``, rows of ``W^P`` over the f-
        then u-tokens, columns over output points; ``W^P`` is never formed whole."""
        n_f = self.layout.in_components * math.prod(grid_shape)
        kwargs = dict(swap=self._swap_output_map, chunk_bytes=self._output_map_chunk_bytes)
        out = self.output_map_f.contract(values[..., :n_f], grid_shape, **kwargs)
        out = out + self.output_map_u.contract(values[..., n_f:], grid_shape, **kwargs)
        return quadrature_weight(grid_shape) * out


class LinearNAO(NAO, name="linear_nao"):
    """NAO with linear-order attention (Yu et al., NeurIPS 2024).

    Intermediate layers as :class:`~nips_plugin.NIPS` without the Fourier filter,
    ``J <- LN_t(sum_h Q_h (Delta K_h^T J / sqrt(dk))) + J``; the kernel layer

    .. math:: \\hat u = \\Delta\\, W^P Q \\big(\\Delta K_f^T f / \\sqrt{d_k}\\big),

    with ``W^P[y, x] = MLP(y, x)`` contracting its second index (the output point
    is the MLP's first argument) and coordinates on ``[0, 1]``. Same result as
    NAO's quadratic order for the same weights up to that convention; memory
    ``O(N^2)`` from ``W^P`` alone.

    Parameters
    ----------
    Same as :class:`NAO`.
    """

    _attention = "linear"
    _swap_output_map = True
    _coord_range = (0.0, 1.0)
