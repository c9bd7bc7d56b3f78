"""The ``nips-plugin`` command: parse arguments and call the library (no logic of its own).

    nips-plugin benchmark [--preset darcy|elasticity|tiny | --data TASKS.h5] [--models ...]
                          [--epochs N | --budget-seconds S] [--n-pairs D] [--n-queries Q]
                          [--draws-per-system K] [--noise LEVEL] [--device cpu|cuda] [--out DIR]
                          [--seed S | --seeds 0,1,2] [--force | --resume]
    nips-plugin train --config NAME [--model NAME] [--model.KEY VALUE ...] [--epochs N]
                      [--resume] [--force] [--mixed-precision]      (also under torchrun)
    nips-plugin scaling --models ... --grids 21,41,81 --batch B --device cpu|cuda
    nips-plugin interpret --run DIR [--system K] [--data FILE]
    nips-plugin export-upstream DIR [--reference-data DIR]
"""

import argparse
import os
import sys

from .training.run import UserError


def _csv(text):
    return [item.strip() for item in text.split(",") if item.strip()]


def _benchmark(args):
    from .evaluation.benchmark import DEFAULT_MODELS, run_benchmark
    from .evaluation.report import results_table
    models = _csv(args.models) if args.models is not None else DEFAULT_MODELS
    results = run_benchmark(preset=args.preset, data=args.data, models=models,
                            epochs=args.epochs, device=args.device, out=args.out, seed=args.seed,
                            seeds=_seeds(args.seeds), budget_seconds=args.budget_seconds,
                            force=args.force, resume=args.resume, progress=not args.quiet,
                            n_pairs=args.n_pairs, n_queries=args.n_queries,
                            draws_per_system=args.draws_per_system, noise=args.noise)
    print(results_table(results))
    print(f"results, checkpoints and plots in {args.out}")


def _seeds(text):
    if text is None:
        return None
    try:
        return [int(s) for s in _csv(text)]
    except ValueError:
        raise UserError(f"--seeds takes comma-separated integers, e.g. 0,1,2; got {text!r}") from None


def _overrides(extra):
    """``--key value`` / ``--key=value`` pairs into a flat dict for zencfg."""
    out, i = {}, 0
    while i < len(extra):
        arg = extra[i]
        if not arg.startswith("--"):
            raise UserError(f"unexpected argument {arg!r} (expected --key value)")
        if "=" in arg:
            key, value = arg[2:].split("=", 1)
        else:
            if i + 1 >= len(extra):
                raise UserError(f"{arg} needs a value")
            key, value = arg[2:], extra[i + 1]
            i += 1
        out[key.replace("-", "_")] = value
        i += 1
    return out


def _train(args, extra):
    import torch.distributed as dist
    from .training.configs import make_train_config
    from .training.run import load_data, prepare_dir, train_run

    try:
        config = make_train_config(args.config, _overrides(extra))
    except ValueError as err:
        raise UserError(str(err).splitlines()[0] + " " + " ".join(str(err).splitlines()[1:2])) from err
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if config.device.startswith("cuda") else "gloo")
        if config.device.startswith("cuda"):
            config.device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    main = not distributed or dist.get_rank() == 0
    if main:
        prepare_dir(config.out, force=args.force, resume=args.resume)
    if distributed:
        dist.barrier()
    data = config.data
    tasks = load_data(data.preset, data.path, data.resolution, seed=config.seed, progress=main)
    model = config.model.to_dict()
    model.pop("_config_name")
    name = model.pop("model_arch")
    run = train_run(name, tasks, config.out, n_pairs=data.n_pairs, n_queries=data.n_queries,
                    batch_size=data.batch_size, n_test_samples_per_system=data.n_test_samples_per_system,
                    draws_per_system=data.draws_per_system,
                    epochs=config.epochs, device=config.device, seed=config.seed, lr=config.opt.lr,
                    weight_decay=config.opt.weight_decay, model_overrides=model, resume=args.resume,
                    mixed_precision=args.mixed_precision or config.mixed_precision,
                    distributed=distributed, progress=main and not args.quiet)
    if main:
        last = run["history"][-1] if run["history"] else {}
        shown = ", ".join(f"{k}={v:.4g}" for k, v in last.items() if k != "epoch")
        print(f"{name}: {len(run['history'])} epochs; {shown}; run folder {config.out}")
    if distributed:
        dist.destroy_process_group()


def _scaling(args):
    from .evaluation.scaling import scaling_main
    scaling_main(args)


def _interpret(args):
    from .interpret.figures import interpret_run
    tasks = None
    if args.data is not None:
        from .training.run import load_data
        tasks = load_data(path=args.data)
    try:
        result = interpret_run(args.run, system=args.system, out=args.out, tasks=tasks)
    except (ValueError, FileNotFoundError) as err:
        raise UserError(str(err)) from err
    for key, value in result.items():
        print(f"{key}: {value}")


def _export_upstream(args):
    from .upstream import export_upstream, format_summary
    from .upstream.export import ExportError
    try:
        summary = export_upstream(args.dir, reference_dir=args.reference_data)
    except ExportError as err:
        raise UserError(str(err)) from err
    print(format_summary(summary))


def build_parser():
    parser = argparse.ArgumentParser(prog="nips-plugin", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    bench = sub.add_parser("benchmark", help="train models side by side and print a table")
    source = bench.add_mutually_exclusive_group()
    source.add_argument("--preset", default="darcy", help="darcy (default), elasticity or tiny")
    source.add_argument("--data", default=None, help="a task file (HDF5) instead of a preset")
    bench.add_argument("--models", default=None,
                       help="comma-separated rows to train, exactly these (default: the papers' nips, nao "
                            "and linear_nao, nips_enhanced, nips_hybrid, fno, tfno; also nao_* and "
                            "linear_nao_* enhanced/hybrid; fno_oracle only when named)")
    budget = bench.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=int, default=None,
                        help="epochs for every model (default: the preset's equal-time budget)")
    budget.add_argument("--budget-seconds", type=float, default=None,
                        help="equal training time measured here: time a few batches of every model "
                             "and give it the epochs that take about this many seconds")
    bench.add_argument("--seeds", default=None,
                       help="comma-separated seeds (e.g. 0,1,2): the benchmark once per seed, rows "
                            "with mean and standard deviation")
    bench.add_argument("--n-pairs", type=int, default=None,
                       help="context pairs d per sample (default: 40, or what the data allow)")
    bench.add_argument("--n-queries", type=int, default=None, help="queries q per sample (default: 10)")
    bench.add_argument("--draws-per-system", type=int, default=None,
                       help="random draws of each training system per epoch (default: 900 samples "
                            "per epoch in all)")
    bench.add_argument("--noise", type=float, default=0.0,
                       help="relative Gaussian noise on every response (e.g. 0.03: 3%% of each "
                            "response's RMS); also reports errors against the clean responses")
    bench.add_argument("--device", default="cpu")
    bench.add_argument("--out", default="runs/benchmark")
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--force", action="store_true", help="overwrite an existing output folder")
    bench.add_argument("--resume", action="store_true", help="continue an interrupted benchmark in --out")
    bench.add_argument("--quiet", action="store_true", help="no progress bars")

    train = sub.add_parser("train", help="train one model from a shipped config (zencfg overrides allowed)",
                           epilog="Overrides: --model fno --model.hidden_channels 32 --opt.lr 1e-3 "
                                  "--data.n_pairs 20 --epochs 10 --out DIR --device cuda --seed 1")
    train.add_argument("--config", default="darcy", help="darcy, elasticity or tiny")
    train.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    train.add_argument("--force", action="store_true", help="overwrite an existing output folder")
    train.add_argument("--mixed-precision", action="store_true", help="autocast the training forward")
    train.add_argument("--quiet", action="store_true", help="no progress bars")

    from .evaluation.scaling import add_scaling_arguments
    add_scaling_arguments(sub.add_parser("scaling", help="time and memory per model and grid"))

    interp = sub.add_parser("interpret", help="kernels, Green's functions and recovered hidden fields")
    interp.add_argument("--run", required=True, help="a model folder of a benchmark or train run")
    interp.add_argument("--system", type=int, default=0, help="which unseen system")
    interp.add_argument("--out", default=None, help="figure folder (default: RUN/interpret)")
    interp.add_argument("--data", default=None,
                        help="the run's task file, if it moved (default: the file or generator the run recorded)")

    export = sub.add_parser("export-upstream",
                            help="write the models, their layers and tests into a neuraloperator "
                                 "source tree (for a pull request)")
    export.add_argument("dir", help="the neuraloperator tree: the folder holding neuralop/")
    export.add_argument("--reference-data", default=None,
                        help="folder of the authors' reference fixtures script_*.pt (default: the "
                             "repository's tests/models/data/authors_reference)")
    return parser


def main(argv=None):
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "train":
        parser.error(f"unrecognised arguments: {' '.join(extra)}")
    try:
        if args.command == "benchmark":
            _benchmark(args)
        elif args.command == "train":
            _train(args, extra)
        elif args.command == "scaling":
            _scaling(args)
        elif args.command == "export-upstream":
            _export_upstream(args)
        else:
            _interpret(args)
    except UserError as err:
        print(f"nips-plugin {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = "; use --resume to continue" if args.command in ("benchmark", "train") else ""
        print(f"nips-plugin {args.command}: interrupted (checkpoints up to the last finished epoch are "
              f"kept{hint})", file=sys.stderr)
        return 130
    return 0
