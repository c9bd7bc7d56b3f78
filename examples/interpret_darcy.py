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

from nips_plugin.interpret import (InContextPredictor, LeastSquaresPredictor, darcy_greens, interpret_run,
                                   kernel_metrics, recover_permeability)
from nips_plugin.training.run import load_data, train_run

tasks = load_data("darcy")  # 21x21, two-phase 12/3 permeabilities; generated once, then cached
if len(sys.argv) > 1:
    run_dir = sys.argv[1]
else:
    run_dir = tempfile.mkdtemp(prefix="nips-darcy-")
    train_run("nips", tasks, run_dir, n_pairs=40, n_queries=10, epochs=40, draws_per_system=10,
              model_overrides={"n_layers": 1})
predictor = InContextPredictor.from_run(run_dir)
test = tasks.indices("test")

# what a perfect kernel would give: the exact operator gives the permeability back
b = tasks.params["permeability"][test[0]]
inner = (slice(1, -1),) * 2
exact = recover_permeability(darcy_greens(b), b.shape)
print(f"recovery from the exact G: {np.linalg.norm(exact[inner] - b[inner]) / np.linalg.norm(b[inner]):.2%}")

metrics = kernel_metrics(predictor, tasks, test, n_pairs=predictor.n_pairs)
# the floor: in-context least squares' rank-d kernel U F^+ from the same contexts (no learning)
floor = kernel_metrics(LeastSquaresPredictor(predictor.n_pairs), tasks, test, predictor.n_pairs, noise_levels=())
print(f"over {metrics['n_systems']} unseen systems, context of {predictor.n_pairs} pairs "
      f"(NIPS, least squares):")
rows = [("kernel error |M-G|/|G|", metrics["kernel_rel_err"], floor["kernel_rel_err"]),
        (f"same on the inputs' span (rank {metrics['span_rank']})", metrics["kernel_rel_err_span"],
         floor["kernel_rel_err_span"]),
        ("misfit on its own context", metrics["context_misfit"], floor["context_misfit"]),
        ("misfit on other pairs of the system", metrics["held_out_misfit"], floor["held_out_misfit"]),
        ("permeability from M, rel. error", metrics["recovery_rel_err"], floor["recovery_rel_err"]),
        ("  log-correlation with the truth", metrics["log_correlation"], floor["log_correlation"]),
        ("  phases right", metrics["phase_accuracy"], floor["phase_accuracy"])]
for label, value, baseline in rows:
    print(f"  {label:<45} {value:.3f}  {baseline:.3f}")
for noise, err in metrics["classical_rel_err"].items():
    phases = metrics["classical_phase_accuracy"][noise]
    print(f"  PDE known, classical, {noise:.0%} noise: rel. error {err:.3f}, phases {phases:.0%} right")

report = interpret_run(run_dir, system=0, tasks=tasks)
print("figures:", *report["figures"].values(), sep="\n  ")
