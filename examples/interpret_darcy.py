"""
Interpret a trained NIPS: its kernel against the exact Green's operator, and the permeability
=============================================================================================

Trains a small NIPS on the generated Darcy preset for a couple of minutes of CPU
(or loads a run folder passed as the first argument), then, on unseen test
systems:

* compares the physical-unit kernel ``M`` (``u ≈ M f``) built from a context of
  ``d`` pairs with the exact discrete Green's operator ``G``, plainly and on the
  span of the training inputs;
* recovers the hidden permeability from ``M`` and, for reference, from the same
  pairs with the PDE known (classical least squares, clean and with 1% / 10%
  response noise);
* writes the figures of one system next to the run.

Usage: ``python examples/interpret_darcy.py [RUN_DIR]``.
"""
import sys
import tempfile

import numpy as np

from nips_plugin.interpret import (InContextPredictor, darcy_greens, interpret_run, kernel_metrics,
                                   recover_permeability)
from nips_plugin.training.run import load_data, train_run

tasks = load_data("darcy")  # 21x21, two-phase 12/3 permeabilities; generated once, then cached
if len(sys.argv) > 1:
    run_dir = sys.argv[1]
else:
    run_dir = tempfile.mkdtemp(prefix="nips-darcy-")
    train_run("nips", tasks, run_dir, n_pairs=40, n_queries=10, epochs=80)
predictor = InContextPredictor.from_run(run_dir)
test = tasks.indices("test")

# what a perfect kernel would give: the exact operator gives the permeability back
b = tasks.params["permeability"][test[0]]
inner = (slice(1, -1),) * 2
exact = recover_permeability(darcy_greens(b), b.shape)
print(f"recovery from the exact G: {np.linalg.norm(exact[inner] - b[inner]) / np.linalg.norm(b[inner]):.2%}")

metrics = kernel_metrics(predictor, tasks, test, n_pairs=predictor.n_pairs)
print(f"over {metrics['n_systems']} unseen systems, context of {predictor.n_pairs} pairs:")
rows = [("kernel error |M-G|/|G|", metrics["kernel_rel_err"]),
        (f"same on the inputs' span (rank {metrics['span_rank']})", metrics["kernel_rel_err_span"]),
        ("misfit on its own context", metrics["context_misfit"]),
        (f"permeability from M (phases {metrics['phase_accuracy']:.0%} right)", metrics["recovery_rel_err"])]
rows += [(f"classical, {noise:.0%} noise (phases {metrics['classical_phase_accuracy'][noise]:.0%} right)", err)
         for noise, err in metrics["classical_rel_err"].items()]
for label, value in rows:
    print(f"  {label:<45} {value:.3f}")

report = interpret_run(run_dir, system=0, tasks=tasks)
print("figures:", *report["figures"].values(), sep="\n  ")
