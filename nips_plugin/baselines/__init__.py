"""No-learning predictors: the benchmark's floors and a user's strongest baselines.

* :class:`LeastSquaresPredictor`: in-context least squares (kernel ``U F^+``), its
  symmetric completion and the variants with a classical operator on the rest;
* :mod:`.local_operator` and :mod:`.output_error`: a local operator (stencil relation)
  fitted to each context, by its equation error or its output error (noisy data);
* :class:`ClassicalPrior` and :class:`PriorResidualProcessor`: such a fit as a prior that a
  learned model corrects, composed explicitly through the data processor.

Nothing here learns; the models (:mod:`nips_plugin.models`) never import it.
"""
from .least_squares import LeastSquaresPredictor
from .predictor import ContextPredictor
from .prior import PRIORS, ClassicalPrior, PriorResidualProcessor, grid_modes

__all__ = ["ContextPredictor", "LeastSquaresPredictor", "ClassicalPrior", "PriorResidualProcessor", "PRIORS",
           "grid_modes"]
