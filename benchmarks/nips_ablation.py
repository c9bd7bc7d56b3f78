"""What each of the enhanced NIPS's options buys: the benchmark's Darcy budget, one off at a time.

    python benchmarks/nips_ablation.py [--preset darcy] [--out runs/ablation]

Trains NIPS exactly as ``nips-plugin benchmark`` does on the preset (same draws,
epochs, batch and layers) for each variant, and prints the unseen-system error
next to in-context least squares (no learning) on the same test draws:

* ``enhanced``: the ``nips_enhanced`` row, coordinate-field input affine + context fit
  (``"auto"``: symmetric when the data are measured symmetric) + shared operator;
* ``slab``: no positional information (``input_norm="slab"``);
* ``least_squares``: the context fit without the symmetry assumption;
* ``no shared operator``: ``shared_operator_modes=None``;
* ``paper``: the ``nips`` row, the paper's ``u = K f`` (none of the options).
"""

import argparse
from pathlib import Path

from nips_plugin.evaluation.evaluate import least_squares_error
from nips_plugin.evaluation.protocol import PRESET_SETTINGS, complete_settings, epochs_for
from nips_plugin.training.run import load_data, train_run

#: name -> (zoo row, overrides of its settings)
VARIANTS = {
    "enhanced": ("nips_enhanced", {}),
    "slab": ("nips_enhanced", {"input_norm": "slab"}),
    "least_squares": ("nips_enhanced", {"context_fit": "least_squares"}),
    "no shared operator": ("nips_enhanced", {"shared_operator_modes": None}),
    "paper": ("nips", {}),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="darcy", choices=["darcy", "elasticity"])
    parser.add_argument("--out", default="runs/ablation")
    args = parser.parse_args(argv)
    tasks = load_data(args.preset, progress=False)
    settings, sampling = complete_settings(PRESET_SETTINGS[args.preset], tasks)
    print(f"NIPS on the {args.preset} preset, {epochs_for(settings, 'nips_enhanced')} epochs "
          f"(the benchmark's budget), {settings['in_context_layers']} layer(s)")
    print("| variant | unseen rel L2 | x lstsq | train s |")
    print("|---|---|---|---|")
    floor = None
    for name, (row, options) in VARIANTS.items():
        run = train_run(row, tasks, Path(args.out) / name, epochs=epochs_for(settings, "nips_enhanced"),
                        model_overrides={"n_layers": settings["in_context_layers"], **options},
                        progress=False, **sampling)
        if floor is None:
            floor = least_squares_error(run["test_loaders"]["id"], run["processor"].layout)
        err = run["history"][-1]["id_rel_l2"]
        seconds = sum(h["seconds"] for h in run["history"])
        print(f"| {name} | {err:.4f} | {err / floor:.2f} | {seconds:.0f} |", flush=True)
    print(f"| lstsq (no learning) | {floor:.4f} | 1.00 | 0 |")


if __name__ == "__main__":
    main()
