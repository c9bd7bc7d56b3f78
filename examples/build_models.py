"""
Build NIPS, NAO and LinearNAO from configs, run a batch, extract a kernel
=========================================================================

Importing ``nips_plugin`` registers the three models in neuraloperator's zoo,
so ``neuralop``'s ``get_model`` builds them by name, exactly like FNO.
One sample packs ``d`` context pairs ``(f_i, u_i)`` of one system and ``q``
query inputs into channels (:func:`nips_plugin.pack_context`); the model
predicts the ``q`` responses with a kernel built from the context only.
"""
import torch
from neuralop.models.base_model import get_model
from neuralop.utils import count_model_params
from zencfg.bunch import Bunch

import nips_plugin  # noqa: F401  (registers nips / nao / linear_nao)

d, q, n = 20, 4, 21          # context pairs, queries, grid points per side
f_ctx = torch.randn(2, d, 1, n, n)   # [batch, pairs, components, *grid]
u_ctx = torch.randn(2, d, 1, n, n)
f_query = torch.randn(2, q, 1, n, n)
x = nips_plugin.pack_context(f_ctx, u_ctx, f_query)   # [2, 2*d + q, n, n]

for arch, extra in [("nips", {"n_modes": (12, 12)}), ("nao", {}), ("linear_nao", {})]:
    config = Bunch({"model": Bunch({
        "model_arch": arch, "data_channels": x.shape[1], "out_channels": q,
        "n_pairs": d, "n_layers": 3, "n_heads": 1, "qk_channels": 16, **extra})})
    model = get_model(config)
    with torch.no_grad():
        u_query = model(x)                    # [2, q, n, n]: predicted responses
        M = model.extract_kernel(x)           # [2, N, N]: u ~ M f for this system
    check = (M @ f_query.reshape(2, q, -1).transpose(1, 2)).transpose(1, 2).reshape(u_query.shape)
    print(f"{arch:>10}: {count_model_params(model):>7,d} parameters, output {tuple(u_query.shape)}, "
          f"kernel {tuple(M.shape)}, |M f - u_hat| = {(check - u_query).abs().max():.1e}")
