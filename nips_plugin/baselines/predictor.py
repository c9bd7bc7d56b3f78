"""The interface of every predictor of responses from a context, in physical units.

A predictor takes a context ``(f_ctx, u_ctx)`` of one system and query inputs and
returns responses (:meth:`ContextPredictor.predict`) or its operator matrix
(:meth:`ContextPredictor.kernel`). Inputs are numpy arrays or torch tensors, one
system (``[n, c, *grid]``) or a batch of systems (``[B, n, c, *grid]``); outputs
are the same kind (numpy or torch on the input's device), floating dtype and
batching. The no-learning predictors of this package
(:class:`~nips_plugin.baselines.LeastSquaresPredictor`) and the trained models
(:class:`~nips_plugin.interpret.InContextPredictor`) share it.
"""

import torch


class ContextPredictor:
    """Validation and conversion shared by predictors (module docstring).

    Subclasses provide ``n_pairs``, ``in_components``, ``out_components`` and
    ``n_dim``, and ``predict`` / ``kernel``.
    """

    def _tensor_options(self):
        """Device and dtype the inputs are converted to (float64 on the CPU by default)."""
        return dict(dtype=torch.float64)

    def _read(self, name, a, components, n_functions=None):
        """``a`` as a batched float tensor ``[B, n, c, *grid]`` in :meth:`_tensor_options`, and whether it was batched."""
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
