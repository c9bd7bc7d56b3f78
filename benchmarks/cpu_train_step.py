"""CPU train step of NIPS against the plain reference implementation, and NIPS memory growth.

    python benchmarks/cpu_train_step.py [--grid 21] [--batch 100] [--rounds 7] [--threads N]
                                        [--memory-grids 41,81,161] [--memory-batch 10]

1. Time of one train step (forward + relative L2 + backward + Adam step) at the
   reference setting (d=50, dk=40, 4 layers, 1 head, fp32) of
   * ``reference``: ``benchmarks/reference_forward.py`` (the authors' NIPS forward
     pass written plainly) on a random state dict whose tensors are leaf
     tensors trained by Adam;
   * ``nips (reference-compatible)``: ``nips_plugin.compat.from_reference_state_dict``
     of the same state dict (per-token input affine, every Fourier mode kept);
   * ``nips (default)``: the resolution-independent NIPS (12 modes, coordinate-field
     input affine, least-squares context fit) built by
     ``nips_plugin.training.zoo.build_model`` with the same sizes.
   The three are timed in interleaved rounds (the machine may be shared): the
   table gives the median and the minimum, and the speed-up of the median.
2. Peak memory of the default NIPS train step on larger grids (in a forked
   child, see ``nips_plugin.evaluation.profiling.peak_memory_mb``), per 1000 grid
   points: constant when memory grows linearly with the grid; and the same with
   ``checkpoint_layers=True`` on the largest grid.
"""

import argparse
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_forward import random_reference_state_dict, reference_forward  # noqa: E402

from nips_plugin import pack_context  # noqa: E402
from nips_plugin.compat import from_reference_state_dict  # noqa: E402
from nips_plugin.layers.context import ContextLayout  # noqa: E402
from nips_plugin.evaluation.profiling import (peak_memory_mb, relative_l2_loss,  # noqa: E402
                                            train_step_fn)
from nips_plugin.training.zoo import build_model  # noqa: E402

D, DK, LAYERS, HEADS = 50, 40, 4, 1


def default_nips(**overrides):
    """The resolution-independent NIPS at the reference sizes (d=50, dk=40, 4 layers, 1 head)."""
    return build_model("nips", ContextLayout(D), 2, qk_channels=DK, n_layers=LAYERS, n_heads=HEADS,
                       **overrides)


def train_steps(n, batch, device="cpu", seed=0):
    """Closures of one train step of the reference, the reference-compatible and the default NIPS
    (also used by ``benchmarks/gpu_check.py``)."""
    gen = torch.Generator().manual_seed(seed)
    f, u = (torch.randn(batch, D, 1, n, n, generator=gen).to(device) for _ in range(2))
    sd = random_reference_state_dict("nips_darcy", n=n, d=D, dk=DK, n_layers=LAYERS, n_heads=HEADS)

    params = {k: v.clone().to(device).requires_grad_(True) for k, v in sd.items()}
    reference_opt = torch.optim.Adam(params.values(), lr=1e-3)

    def reference_step():
        reference_opt.zero_grad(set_to_none=True)
        relative_l2_loss(reference_forward(params, "nips_darcy", f, u), u).backward()
        reference_opt.step()

    x, y = pack_context(f, u), u.reshape(batch, D, n, n)
    steps = {"reference": reference_step}
    for name, model in (("nips (reference-compatible)", from_reference_state_dict(sd, "nips_darcy")),
                        ("nips (default)", default_nips())):
        model.to(device).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        steps[name] = train_step_fn(model, x, y, relative_l2_loss, optimizer)
    return steps


def time_interleaved(steps, rounds):
    """Wall time (s) of each closure over interleaved rounds, after one warm-up call each."""
    for step in steps.values():
        step()
    times = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return times


def _nips_step(n, batch, checkpoint_layers):
    """Train-step closure of the default NIPS on random data."""
    model = default_nips(checkpoint_layers=checkpoint_layers).train()
    gen = torch.Generator().manual_seed(0)
    f, u = torch.randn(batch, D, 1, n, n, generator=gen), torch.randn(batch, D, 1, n, n, generator=gen)
    return train_step_fn(model, pack_context(f, u), u.reshape(batch, D, n, n), relative_l2_loss,
                         torch.optim.Adam(model.parameters(), lr=1e-3))


def memory_rows(grids, batch):
    """Peak train-step memory of the default NIPS per grid (and with checkpointing on the last).

    Each step is built and run in a forked child; call this before running steps here, whose
    freed heap the children would otherwise reuse (see ``peak_memory_mb``)."""
    configs = [(n, False) for n in grids] + [(grids[-1], True)]
    return [(n, ckpt, peak_memory_mb(lambda step: step(), "cpu", setup=partial(_nips_step, n, batch, ckpt)))
            for n, ckpt in configs]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=21, help="points per side of the timed grid")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds (interleaved)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--memory-grids", default="41,81,161", help="'' to skip the memory part")
    parser.add_argument("--memory-batch", type=int, default=10)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    grids = [int(v) for v in args.memory_grids.split(",") if v.strip()]
    memory = memory_rows(grids, args.memory_batch) if grids else []  # first: see memory_rows

    print(f"train step, {args.grid}x{args.grid} grid, batch {args.batch}, d={D}, dk={DK}, "
          f"{LAYERS} layers, {HEADS} head, fp32, {torch.get_num_threads()} threads, {args.rounds} rounds")
    times = time_interleaved(train_steps(args.grid, args.batch), args.rounds)
    base = statistics.median(times["reference"])
    print("| implementation | median ms | min ms | speed-up vs reference (median) |")
    print("|---|---|---|---|")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"| {name} | {1e3 * med:,.0f} | {1e3 * min(values):,.0f} | {base / med:.2f}x |")

    if memory:
        print(f"\npeak train-step memory, default NIPS, batch {args.memory_batch} (forked child, 1 thread)")
        print("| grid | grid points | checkpoint_layers | peak MB | MB per 1000 grid points |")
        print("|---|---|---|---|---|")
        for n, checkpoint_layers, mb in memory:
            per = "-" if mb is None else f"{1e3 * mb / n ** 2:.2f}"
            mb = "-" if mb is None else f"{mb:,.0f}"
            print(f"| {n}x{n} | {n * n:,} | {checkpoint_layers} | {mb} | {per} |")


if __name__ == "__main__":
    main()
