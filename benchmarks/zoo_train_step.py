"""CPU train step of the zoo's in-context models (NIPS, LinearNAO, NAO) relative to NIPS.

    python benchmarks/zoo_train_step.py [--grid 21] [--batch 16] [--layers 1,4] [--rounds 7]
                                        [--threads N] [--variants NAME,...]

One train step (forward + relative L2 + backward + AdamW step) of the models as
the benchmark builds them, ``nips_plugin.training.zoo.build_model(name,
ContextLayout(40, n_queries=10), 2, n_layers=L)`` (d = 40, q = 10, the zoo's
default settings), on random data. For each number of layers the variants are
timed in interleaved rounds (the machine may be shared; see
``benchmarks/cpu_train_step.py``) and the table gives the median, the minimum
and the median relative to NIPS's. Variants:

* ``nips``, ``linear_nao``, ``nao``: the papers' models (the authors' MLP ``W^P``; NAO's
  explicit ``T x T`` attention);
* ``*_enhanced``: with this package's options (cosine-series ``W^P``, NAO's attention
  contracted in the linear order, context fit, coordinate fields, shared operator);
* ``nao_enhanced (quadratic)``: the same with the explicit ``T x T`` attention matrix
  (``attention_order="quadratic"``), the same function;
* ``nips_hybrid (star)``: the enhanced NIPS correcting the 5-point local operator fitted
  to each context (``PriorResidualProcessor`` with ``"star"``, what ``"auto"`` picks on
  finite-difference Darcy data); its step includes the processor's per-context fits.
"""

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_train_step import time_interleaved  # noqa: E402

from nips_plugin import pack_context  # noqa: E402
from nips_plugin.baselines import PriorResidualProcessor  # noqa: E402
from nips_plugin.evaluation.profiling import relative_l2_loss, train_step_fn  # noqa: E402
from nips_plugin.layers.context import ContextLayout  # noqa: E402
from nips_plugin.training.zoo import build_model, optimizer_defaults  # noqa: E402

D, Q = 40, 10

#: name -> (zoo row, constructor overrides of the row's settings, classical prior)
VARIANTS = {
    "nips": ("nips", {}, None),
    "linear_nao": ("linear_nao", {}, None),
    "nao": ("nao", {}, None),
    "nips_enhanced": ("nips_enhanced", {}, None),
    "linear_nao_enhanced": ("linear_nao_enhanced", {}, None),
    "nao_enhanced": ("nao_enhanced", {}, None),
    "nao_enhanced (quadratic)": ("nao_enhanced", {"attention_order": "quadratic"}, None),
    "nips_hybrid (star)": ("nips_hybrid", {}, "star"),
}


def zoo_step(variant, n_layers, n, batch, seed=0):
    """Train-step closure of a :data:`VARIANTS` model on random data (AdamW at the zoo's setting)."""
    name, overrides, prior = VARIANTS[variant]
    torch.manual_seed(seed)
    model = build_model(name, ContextLayout(D, n_queries=Q), 2, n_layers=n_layers, **overrides).train()
    gen = torch.Generator().manual_seed(seed)
    f, u, fq, uq = (torch.randn(batch, m, 1, n, n, generator=gen) for m in (D, D, Q, Q))
    u[..., [0, -1], :] = u[..., :, [0, -1]] = 0  # Dirichlet responses: the local fit applies
    optimizer = torch.optim.AdamW(model.parameters(), **optimizer_defaults(name))
    x, y = pack_context(f, u, fq), uq.reshape(batch, Q, n, n)
    step = train_step_fn(model, x, y, relative_l2_loss, optimizer)
    if prior is None:
        return step
    processor = PriorResidualProcessor(D, Q, prior=prior)

    def with_prior():  # the processor fits the prior to each context of the batch, then the step
        processor.preprocess({"x": x.clone(), "y": y.clone()})
        step()
    return with_prior


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=21, help="points per side")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--layers", default="1,4", help="numbers of layers, one table each")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds (interleaved)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated, from {', '.join(VARIANTS)} (nips always runs)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = ["nips"] + [v.strip() for v in args.variants.split(",") if v.strip() and v.strip() != "nips"]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; expected some of {list(VARIANTS)}")
    for n_layers in (int(v) for v in args.layers.split(",")):
        steps = {v: zoo_step(v, n_layers, args.grid, args.batch) for v in variants}
        times = time_interleaved(steps, args.rounds)
        base = statistics.median(times["nips"])
        print(f"\ntrain step, {n_layers} layer(s), {args.grid}x{args.grid} grid, batch {args.batch}, "
              f"d={D}, q={Q}, fp32, {torch.get_num_threads()} threads, {args.rounds} rounds")
        print("| model | median ms | min ms | x NIPS (median) |")
        print("|---|---|---|---|")
        for name, values in times.items():
            med = statistics.median(values)
            print(f"| {name} | {1e3 * med:,.0f} | {1e3 * min(values):,.0f} | {med / base:.2f}x |",
                  flush=True)


if __name__ == "__main__":
    main()
