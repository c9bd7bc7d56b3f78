"""Compatibility: the authors' checkpoints, and neuraloperator 2.0.0's odd-grid SpectralConv.

Authors' checkpoints
--------------------
:func:`from_reference_state_dict` turns a state dict saved by the published
NIPS / NAO scripts, or one of the released NAO checkpoints, into the equivalent
:class:`~nips_plugin.NIPS`, :class:`~nips_plugin.NAO` or
:class:`~nips_plugin.LinearNAO` in its *reference-compatible configuration*
(input LayerNorm over the whole token slab with a per-token affine, every
Fourier mode kept). Given the packed, normalised context (``q = 0``) the model
reproduces the authors' output: the tests check it against outputs recorded by
running their code (``tests/models/data/authors_reference``), to about 1e-6.

Layout read (see ``nips-nao-math.md`` §5): the scripts index layers
``t = 0..L-1``; ``fcq.{t}.{h}`` / ``fck.{t}.{h}`` (``fcq_{t}_{h}`` in the NAO
codes) are ``nn.Linear(d, dk)`` of layer ``t`` and head ``h``, layer ``L-1``
being the kernel layer; ``fcn.0`` is the input LayerNorm ``[T, d]`` and
``fcn.{t}`` (``t >= 1``) the LayerNorm after intermediate layer ``t-1``
(``LayerNorm(d)``, except in the NAO folder's model, where every ``fcn{t}`` is a
``LayerNorm([T, d])``). NIPS filters: ``conv.{t}`` (f-block) and ``convf.{t}``
(u-block) for Darcy; ``convx, convy, convfx, convfy .{t}.{h}`` (blocks ``f_x,
f_y, u_x, u_y``, one per head) for Mechanical MNIST. The NAO codes' ``kernel`` /
``kernelf`` MLPs are ``W^{P,f}`` / ``W^{P,u}`` (acting on the attention rows
of the first N tokens, the f-tokens, and of the last N, despite their names);
their grid is ``linspace(-1, 1, n)`` in ``NAO_Darcy.py`` and the NAO folder,
``linspace(0, 1, n)`` in ``LinearNAO_Darcy.py``, and every quadrature weight is
that grid's ``dx * dy``. The grid is 2-D and square.

neuraloperator 2.0.0's SpectralConv
-----------------------------------
Its ``forward`` is wrong on odd grid sizes along every dimension but the last
(the spectrum is re-centred with ``fftshift`` instead of ``ifftshift``). The
upstream repository fixed this after the 2.0.0 release. :func:`patch_spectral_conv`
replaces the method with :func:`spectral_conv_forward`
(same weights, same results on even grids), so FNO and TFNO baselines are exact
on odd grids too; it is a no-op where the installed version is already correct.
"""

import math

import torch

from neuralop.layers.spectral_convolution import SpectralConv

from .layers.fourier_kernel import kept_mode_slices
from .models import NAO, NIPS, LinearNAO

#: the authors' codes :func:`from_reference_state_dict` reads
VARIANTS = ("nips_darcy", "nips_mmnist", "linear_nao_darcy", "nao_darcy", "nao_darcy_gtou")


# --------------------------------------------------------------------------- SpectralConv fix

def _fft_dims_and_size(conv, x):
    """Transformed dims, (r)FFT sizes and forward transform for a SpectralConv input."""
    dims = tuple(range(-conv.order, 0))
    size = list(x.shape[-conv.order:])
    if not conv.complex_data:
        size[-1] = size[-1] // 2 + 1
    return dims, size


def spectral_conv_forward(self, x, output_shape=None):
    """Corrected ``SpectralConv.forward`` (exact on odd grids); same signature and semantics.

    Parameters
    ----------
    x : torch.Tensor
        ``(batch, in_channels, *grid)``.
    output_shape : tuple of int, optional
        Grid of the output (spectral resampling), as upstream.
    """
    dims, fft_size = _fft_dims_and_size(self, x)
    in_grid = x.shape[-self.order:]
    if self.fno_block_precision == "half":
        x = x.half()
    x_ft = torch.fft.fftn(x, dim=dims, norm=self.fft_norm) if self.complex_data \
        else torch.fft.rfftn(x, dim=dims, norm=self.fft_norm)
    if self.fno_block_precision == "mixed":
        x_ft = x_ft.chalf()
    out_dtype = torch.chalf if self.fno_block_precision in ("half", "mixed") else torch.cfloat

    if output_shape is None and self.resolution_scaling_factor is not None:
        output_shape = tuple(round(s * r) for s, r in zip(in_grid, self.resolution_scaling_factor))
    out_grid = tuple(output_shape) if output_shape is not None else tuple(in_grid)
    out_fft_size = list(out_grid)
    if not self.complex_data:
        out_fft_size[-1] = out_fft_size[-1] // 2 + 1

    n_lead = 1 if self.separable else 2
    weight_modes = self.weight.shape[n_lead:]
    out_ft = torch.zeros(x.shape[0], self.out_channels, *out_fft_size,
                         dtype=out_dtype, device=x.device)
    n_real = 0 if self.complex_data else 1
    for sx, so, sw in kept_mode_slices([fft_size, out_fft_size], weight_modes, n_real):
        w = self.weight[(slice(None),) * n_lead + sw]
        out_ft[(..., *so)] = self._contract(x_ft[(..., *sx)], w, separable=self.separable)

    x = torch.fft.ifftn(out_ft, s=out_grid, dim=dims, norm=self.fft_norm) if self.complex_data \
        else torch.fft.irfftn(out_ft, s=out_grid, dim=dims, norm=self.fft_norm)
    if self.bias is not None:
        x = x + self.bias
    return x


def spectral_conv_is_exact():
    """Whether the installed ``SpectralConv`` is exact on odd grids (identity multiplier test)."""
    conv = SpectralConv(1, 1, (5, 5), bias=False)
    with torch.no_grad():
        conv.weight.to_tensor().fill_(1.0)
        x = torch.randn(1, 1, 5, 5, generator=torch.Generator().manual_seed(0))
        return torch.allclose(conv(x), x, atol=1e-5)


def patch_spectral_conv():
    """Make neuraloperator's ``SpectralConv`` (hence FNO and TFNO) exact on odd grids.

    Replaces ``SpectralConv.forward`` process-wide. Call it once before training
    or evaluating FNO/TFNO on grids with an odd size (21, 29, 85, 421, ...).
    Idempotent; does nothing if the installed version is already exact.

    Returns
    -------
    bool
        True if the method was replaced by this call.
    """
    if SpectralConv.forward is spectral_conv_forward or spectral_conv_is_exact():
        return False
    SpectralConv.forward = spectral_conv_forward
    return True


# --------------------------------------------------------------------------- authors' checkpoints

def _count(present):
    i = 0
    while present(i):
        i += 1
    return i


def _reference_multiplier(w1, w2, n):
    """The authors' 2-D multiplier on the full rfft2 grid ``[n, n//2+1]``: rows
    ``[0, m)`` from ``weights1``, rows ``[n-m, n)`` from ``weights2`` (which wins
    where the two overlap), columns ``[0, m)``, all else zero."""
    m = w1.shape[0]
    full = torch.zeros(n, n // 2 + 1, dtype=torch.complex64)
    full[:m, :m] = w1
    full[n - m:, :m] = w2
    return full


def infer_reference_variant(state_dict):
    """Which of the authors' scripts saved ``state_dict``, from its keys and shapes.

    Parameters
    ----------
    state_dict : dict of str -> torch.Tensor

    Returns
    -------
    str
        One of :data:`VARIANTS`.

    Raises
    ------
    ValueError
        If the keys match none of the scripts, or if they do not decide between
        ``"nao_darcy"`` and ``"nao_darcy_gtou"`` (a one-layer model: both have only
        the input norm ``fcn0``, and they differ only in the ``W^P`` edges).
    """
    keys = {k.removeprefix("module.") for k in state_dict}
    if "conv.0.weights1" in keys:
        return "nips_darcy"
    if "convx.0.0.weights1" in keys:
        return "nips_mmnist"
    has_output_map = {"kernel.layers.0.weight", "kernelf.layers.0.weight"} <= keys
    if has_output_map and "fcq.0.0.weight" in keys:
        return "linear_nao_darcy"
    if has_output_map and "fcq_0_0.weight" in keys:
        norm = state_dict.get("fcn1.weight", state_dict.get("module.fcn1.weight"))
        if norm is None:
            raise ValueError(
                "cannot tell 'nao_darcy' (NIPS/NAO_Darcy.py) from 'nao_darcy_gtou' (the NAO folder's "
                "model): a one-layer state dict has no fcn1 to decide; pass variant explicitly"
            )
        return "nao_darcy_gtou" if norm.ndim == 2 else "nao_darcy"
    raise ValueError(
        f"the state dict matches none of the authors' scripts {VARIANTS} (expected e.g. "
        f"'conv.0.weights1', 'convx.0.0.weights1', or 'kernel.layers.0.weight' with 'fcq.0.0.weight' "
        f"or 'fcq_0_0.weight'); got keys {sorted(keys)[:6]}..."
    )


def from_reference_state_dict(state_dict, variant=None):
    """Build the reference-compatible model from a state dict of the authors' code.

    Parameters
    ----------
    state_dict : dict of str -> torch.Tensor
        As saved by the published script (``torch.save(model.state_dict())``), or a
        released checkpoint (``torch.load(path)``); a ``module.`` prefix is dropped.
    variant : {"nips_darcy", "nips_mmnist", "linear_nao_darcy", "nao_darcy", "nao_darcy_gtou"}, optional
        Which code saved it: the NIPS folder's ``NIPS_Darcy.py``, ``NIPS_MMNIST.py``,
        ``LinearNAO_Darcy.py``, ``NAO_Darcy.py``, or the NAO folder's
        ``Attention_darcy_gtou_int.py`` (the released checkpoints
        ``best_model_dk40_darcy_gtou*.ckpt``, ``best_model_dk20_darcy_gtou_small.ckpt``).
        None: inferred by :func:`infer_reference_variant`, which raises a
        ``ValueError`` where the keys and shapes do not decide.

    Returns
    -------
    NIPS, NAO or LinearNAO
        In eval mode, with ``q = 0`` channels (``in_channels = d*(c_f+c_u)``); the
        number of pairs ``d``, key width ``dk``, layers, heads and grid are inferred
        from the tensors. Its output on the packed normalised context
        (:func:`nips_plugin.pack_context` of the scripts' first and second token
        blocks) is the script's output.
    """
    if variant is None:
        variant = infer_reference_variant(state_dict)
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    sd = {k.removeprefix("module."): v for k, v in state_dict.items()}
    nao_folder = variant in ("nao_darcy", "nao_darcy_gtou")
    if nao_folder:
        q_name, k_name, n_name = (lambda t, h: f"fcq_{t}_{h}"), (lambda t, h: f"fck_{t}_{h}"), (lambda t: f"fcn{t}")
    else:
        q_name, k_name, n_name = (lambda t, h: f"fcq.{t}.{h}"), (lambda t, h: f"fck.{t}.{h}"), (lambda t: f"fcn.{t}")

    def get(key):
        if key not in sd:
            raise ValueError(f"state dict for variant {variant!r} has no entry {key!r}")
        return sd[key]

    n_layers = _count(lambda t: q_name(t, 0) + ".weight" in sd)
    n_heads = _count(lambda h: q_name(0, h) + ".weight" in sd)
    if n_layers == 0 or n_heads == 0:
        raise ValueError(f"no {q_name(0, 0)}.weight in the state dict: not a {variant!r} checkpoint")
    dk, d = get(q_name(0, 0) + ".weight").shape
    c = 2 if variant == "nips_mmnist" else 1
    n_tokens = get(n_name(0) + ".weight").shape[0]
    n = math.isqrt(n_tokens // (2 * c))
    if 2 * c * n * n != n_tokens:
        raise ValueError(f"{n_name(0)}.weight has {n_tokens} rows: not {2 * c} blocks of a square grid")

    common = dict(in_channels=2 * c * d, out_channels=c * d, n_pairs=d, in_components=c,
                  out_components=c, n_layers=n_layers, n_heads=n_heads, qk_channels=dk,
                  input_norm="token_affine", grid_shape=(n, n))
    if variant.startswith("nips"):
        model = NIPS(n_modes=(n, n), filter_per_head=variant == "nips_mmnist", context_fit="none", **common)
    elif variant == "linear_nao_darcy":
        # LinearNAO_Darcy.py: grid linspace(0, 1, n), W^P[y, x] = MLP(y, x)
        model = LinearNAO(n_dim=2, coord_range=(0.0, 1.0), output_map_contract="second", **common)
    else:
        # NAO_Darcy.py and the NAO folder: grid linspace(-1, 1, n), W^P[x, y] = MLP(x, y); the
        # NAO folder pairs x with the axis-swapped grid and has a LayerNorm([2N, d]) at every layer
        gtou = variant == "nao_darcy_gtou"
        model = NAO(n_dim=2, coord_range=(-1.0, 1.0), output_map_contract="first",
                    output_map_edges="transposed" if gtou else "grid",
                    layer_norm="token_affine" if gtou else "feature", **common)

    with torch.no_grad():
        model.input_norm.weight.copy_(get(n_name(0) + ".weight").T)
        model.input_norm.bias.copy_(get(n_name(0) + ".bias").T)
        for t in range(n_layers):
            last = t == n_layers - 1
            layer = None if last else model.layers[t]
            query = model.kernel_query if last else layer.query
            key = model.kernel_key if last else layer.key
            for h in range(n_heads):
                rows = slice(None) if query.groups > 1 else slice(h * dk, (h + 1) * dk)
                g = h if query.groups > 1 else 0
                query.weight[g, rows] = get(q_name(t, h) + ".weight")
                query.bias[g, rows, 0] = get(q_name(t, h) + ".bias")
                key.weight[0, h * dk:(h + 1) * dk] = get(k_name(t, h) + ".weight")
                key.bias[0, h * dk:(h + 1) * dk, 0] = get(k_name(t, h) + ".bias")
            if not last:
                norm_weight, norm_bias = get(n_name(t + 1) + ".weight"), get(n_name(t + 1) + ".bias")
                if norm_weight.shape[::-1] != layer.norm.weight.shape:
                    raise ValueError(
                        f"{n_name(t + 1)}.weight has shape {tuple(norm_weight.shape)}, expected "
                        f"{tuple(layer.norm.weight.shape[::-1])} for variant {variant!r}"
                    )
                # a [T, d] slab norm is stored [d, T] (SlabNorm); a LayerNorm(d) as is
                layer.norm.weight.copy_(norm_weight.mT if norm_weight.ndim == 2 else norm_weight)
                layer.norm.bias.copy_(norm_bias.mT if norm_bias.ndim == 2 else norm_bias)
            if variant.startswith("nips"):
                filt = model.kernel_filter if last else layer.filter
                if variant == "nips_darcy":
                    keys = [f"conv.{t}", f"convf.{t}"]
                else:
                    keys = [f"{p}.{t}.{h}" for h in range(n_heads) for p in ("convx", "convy", "convfx", "convfy")]
                filt.load_full_multiplier(torch.stack([
                    _reference_multiplier(get(k + ".weights1"), get(k + ".weights2"), n) for k in keys]))
        if not variant.startswith("nips"):
            # `kernel` multiplies the rows of the first N tokens (the f-tokens), `kernelf` the
            # rows of the last N (the u-tokens), whatever their names suggest
            for ours, theirs in ((model.output_map_f, "kernel"), (model.output_map_u, "kernelf")):
                for i in (0, 2, 4):
                    ours.layers[i].weight.copy_(get(f"{theirs}.layers.{i}.weight"))
                    ours.layers[i].bias.copy_(get(f"{theirs}.layers.{i}.bias"))
    return model.eval()
