"""Scaling study, cost measurement and the performance options of the models (no timing asserts)."""
import json

import pytest
import torch

from nips_plugin import NAO, NIPS, LinearNAO, pack_context
from nips_plugin.layers import fourier_kernel
from nips_plugin.evaluation import profiling
from nips_plugin.evaluation.scaling import run_scaling

TINY = dict(batch_size=2, n_pairs=4, qk_channels=6, n_layers=2, warmup=0, repeat=1, progress=False)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny problems: one thread avoids OpenMP synchronisation costs on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def context(grid, d=4, q=0, B=2):
    fq = torch.randn(B, q, 1, *grid) if q else None
    return pack_context(torch.randn(B, d, 1, *grid), torch.randn(B, d, 1, *grid), fq)


def test_run_scaling_writes_rows_json_and_plot(tmp_path):
    rows = run_scaling(["nips", "fno"], [9, 13], out=tmp_path, **TINY)
    assert [(r["model"], r["grid"]) for r in rows] == [
        (m, g) for m in ("nips", "fno") for g in ("9x9", "13x13")]
    saved = json.loads((tmp_path / "scaling.json").read_text())
    assert saved["settings"]["batch_size"] == 2 and len(saved["rows"]) == 4
    for row in saved["rows"]:
        assert {"model", "grid", "grid_points", "tokens", "params", "train_ms", "infer_ms",
                "peak_mb", "status"} <= set(row)
        assert row["status"] == "ok" and row["params"] > 0 and row["train_ms"] > 0
        assert row["peak_mb"] is None or row["peak_mb"] >= 0
    assert saved["rows"][0]["tokens"] == 2 * 81 and saved["rows"][-1]["tokens"] == 169
    assert (tmp_path / "scaling.png").stat().st_size > 0


def test_out_of_memory_stops_only_that_model(monkeypatch):
    forward = LinearNAO.forward

    def fails_from_11(self, x, **kwargs):
        if x.shape[-1] >= 11:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(self, x, **kwargs)

    monkeypatch.setattr(LinearNAO, "forward", fails_from_11)
    rows = run_scaling(["linear_nao", "nips"], [9, 11, 13], **TINY)
    status = {(r["model"], r["grid_points"]): r["status"] for r in rows}
    assert status == {("linear_nao", 81): "ok", ("linear_nao", 121): "oom",
                      ("nips", 81): "ok", ("nips", 121): "ok", ("nips", 169): "ok"}


def test_is_oom():
    assert profiling.is_oom(torch.OutOfMemoryError("x"))
    assert profiling.is_oom(MemoryError())
    assert profiling.is_oom(profiling.ChildMemoryError("killed"))
    assert profiling.is_oom(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried ..."))
    assert not profiling.is_oom(ValueError("out of memory"))
    assert not profiling.is_oom(RuntimeError("shape mismatch"))


def test_peak_memory_grows_with_allocation():
    small = profiling.peak_memory_mb(lambda: torch.ones(1000).sum())
    big = profiling.peak_memory_mb(lambda: torch.ones(50 * 2**20 // 4).sum())  # 50 MB
    if big is None:
        pytest.skip("no fork on this platform")
    assert 0 <= small < 20 and 45 < big < 80 and big > small + 30, (small, big)
    with pytest.raises(profiling.ChildMemoryError):
        profiling.peak_memory_mb(lambda: torch.ones(2**28), limit_mb=100)  # 1 GB over a 100 MB limit


def test_checkpoint_layers_same_output_and_gradients():
    kwargs = dict(in_channels=10, out_channels=2, n_pairs=4, n_layers=3, n_heads=2, qk_channels=5,
                  n_modes=(5, 5))
    plain, ckpt = NIPS(**kwargs), NIPS(checkpoint_layers=True, **kwargs)
    ckpt.load_state_dict(plain.state_dict())
    x = context((9, 7), q=2)
    outs, grads = [], []
    for model in (plain, ckpt):
        out = model(x)
        out.square().sum().backward()
        outs.append(out)
        grads.append([p.grad for p in model.parameters()])
    torch.testing.assert_close(outs[1], outs[0])
    for g_ckpt, g_plain in zip(grads[1], grads[0]):
        torch.testing.assert_close(g_ckpt, g_plain)


def test_autocast_bf16_on_odd_grid_close_to_fp32():
    model = NIPS(in_channels=10, out_channels=2, n_pairs=4, n_layers=3, n_heads=2, qk_channels=5,
                 n_modes=(6, 6))
    x = context((13, 11), q=2)
    reference = model(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    out.float().square().sum().backward()
    assert torch.isfinite(out.float()).all()
    assert ((out.float() - reference).norm() / reference.norm()) < 0.05
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_fourier_filter_dft_products_and_ffts_agree(monkeypatch):
    """The last grid dimension is transformed by DFT-basis products up to MATMUL_DFT_MAX_BINS
    kept bins and by FFTs beyond: same values and gradients, exact on odd grids."""
    filt = fourier_kernel.SharedSpectralFilter(2, (7, 75), groups=2).double()  # 38 bins kept
    x = torch.randn(2, 3, 2, 9, 75, dtype=torch.float64, requires_grad=True)
    results = []
    for max_bins in (100, 10):  # all products, all FFTs
        monkeypatch.setattr(fourier_kernel, "MATMUL_DFT_MAX_BINS", max_bins)
        out = filt(x)
        results.append((out, *torch.autograd.grad(out.square().sum(), (x, filt.weight))))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b)
    dims = (-2, -1)
    mult = filt.full_multiplier((9, 75)).view(2, 2, 9, 38)
    direct = torch.fft.irfftn(torch.fft.rfftn(x, dim=dims)[:, :, None] * mult, s=(9, 75), dim=dims)
    torch.testing.assert_close(results[0][0], direct.flatten(2, 3))


@pytest.mark.parametrize("cls", [NAO, LinearNAO])
def test_chunked_output_map_matches_unchunked(cls):
    kwargs = dict(in_channels=8, out_channels=4, n_pairs=4, n_layers=2, n_heads=2, qk_channels=5)
    whole, chunked = cls(**kwargs), cls(output_map_chunk_mb=0.1, **kwargs)  # 1 chunk / 3 points a chunk
    chunked.load_state_dict(whole.state_dict())
    x = context((7, 6))
    with torch.no_grad():
        torch.testing.assert_close(chunked(x), whole(x))
        torch.testing.assert_close(chunked.extract_kernel(x), whole.extract_kernel(x))
    for model in (whole, chunked):
        model(x).square().sum().backward()  # chunks are recomputed in the backward pass
    for p_chunked, p_whole in zip(chunked.parameters(), whole.parameters()):
        torch.testing.assert_close(p_chunked.grad, p_whole.grad)
