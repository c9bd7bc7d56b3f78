"""Evaluation: models side by side (benchmark), time and memory (profiling, scaling), figures.

Training (:mod:`nips_plugin.training`) produces run folders; this package
measures and compares them, next to the no-learning least-squares floor.
"""
