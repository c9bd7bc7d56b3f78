"""Interpretability and inverse problems for trained in-context operators.

* :class:`InContextPredictor`: a trained NIPS / NAO / LinearNAO with its data
  processor (and the classical prior of a ``*_hybrid`` run), predicting and exposing its kernel ``u ≈ M f`` in physical units;
  :class:`LeastSquaresPredictor` (from :mod:`nips_plugin.baselines`, where it lives):
  the same for in-context least squares (the no-learning floor, kernel ``U F^+``).
* :func:`greens_operator`: the exact discrete solution operator ``G`` of a
  Darcy or elasticity system, in the kernel's layout, to compare ``M`` with.
* :func:`recover_permeability`, :func:`recover_modulus`: the hidden field from a
  kernel; :func:`classical_recovery`: from the context pairs with the PDE known
  (the no-learning reference, with optional response noise).
* :func:`kernel_metrics`: the benchmark numbers; :func:`interpret_run`: numbers
  and figures for one system of a run folder.
"""
from .figures import interpret_run, plot_interpretation
from .greens import darcy_greens, elasticity_greens, greens_operator
from ..baselines import LeastSquaresPredictor
from .predictor import InContextPredictor
from .classical import classical_recovery
from .metrics import input_principal_basis, kernel_metrics, log_correlation, phase_accuracy
from .recovery import recover_modulus, recover_permeability

__all__ = [
    "InContextPredictor", "LeastSquaresPredictor", "greens_operator", "darcy_greens", "elasticity_greens",
    "recover_permeability", "recover_modulus", "classical_recovery", "phase_accuracy",
    "input_principal_basis", "kernel_metrics", "log_correlation", "plot_interpretation", "interpret_run",
]
